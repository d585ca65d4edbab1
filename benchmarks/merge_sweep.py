"""Merge the finished cells of a new ``aerossl sweep`` folder into a committed sweep table.

A sweep's tables (``sweep.md``, ``sweep.csv``, ``sweep.json``), its plot and its compare view
are rebuilt by ``aerossl sweep ... --report`` from the run folders. Run folders are not
committed, so cells trained in a later session (on a fresh machine) cannot be reported beside
the earlier ones that way. This script reads the committed ``sweep.json`` and the new folder's
(``aerossl sweep ... --report`` first), keeps every cell of both (a cell of the new folder
replaces the committed cell of the same name), and writes the tables and the plot again with
aerossl's own writers; ``compare.md`` gets the new folder's rows added (read from its run
folders). Nothing is trained and no number is computed here but the means over seeds.

    python benchmarks/merge_sweep.py --into benchmarks/results/sweep_ucmerced_4views \
        --new /work/sweeps/ucmerced_v4 --labels 1 2 4 --methods supervised fixmatch softmatch
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aerossl.pipelines.sweep import parse_budget, plot_sweep, write_tables
from aerossl.runs.compare import write_comparison


def table_rows(markdown: str) -> tuple[list[str], dict[str, str]]:
    """The header lines and the rows (by their first cell) of a one-table markdown file."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    rows = {ln.split("|")[1].strip(): ln for ln in lines[2:]}
    return lines[:2], rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--into", type=Path, required=True, help="the committed sweep folder")
    ap.add_argument("--new", type=Path, required=True, help="the new sweep folder")
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--methods", nargs="+", required=True)
    args = ap.parse_args()

    old = json.loads((args.into / "sweep.json").read_text())["cells"]
    new = json.loads((args.new / "sweep.json").read_text())["cells"]
    by_name = {c["name"]: c for c in old}
    by_name.update({c["name"]: c for c in new})
    budgets = [parse_budget(b) for b in args.labels]
    cells = sorted(by_name.values(), key=lambda c: (c["seed"], c["labels_per_class"],
                                                    args.methods.index(c["method"])))
    files = write_tables(args.into, cells, budgets, args.methods)
    groups = json.loads(files["json"].read_text())["groups"]
    plot_sweep(groups, cells, args.into / "sweep.png")

    compare = args.into / "compare.md"
    head, rows = table_rows(compare.read_text()) if compare.is_file() else ([], {})
    table, _ = write_comparison([c["run_dir"] for c in new], args.new / "compare.png")
    new_head, new_rows = table_rows(table)
    rows.update(new_rows)
    ordered = [rows[c["name"]] for c in cells if c["name"] in rows]
    compare.write_text("\n".join((head or new_head) + ordered) + "\n")
    print(f"{len(cells)} cells ({len(new)} from {args.new}) -> {args.into}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
