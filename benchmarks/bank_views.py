"""How many banked views does a run need? The same run with ``bank.views`` = 1, 2, 4, 8, 16,
with and without ``bank.dihedral`` (random flips and 90-degree rotations of the banked maps).

Each row is one ``aerossl train`` of CONFIG (default: FixMatch on the pretrained
EfficientNet-Lite0, demo set) with another view count, same seed, split and step budget; the
bank is built cold for each view count (its files are keyed by it; dihedral draws share it).
The table gives test accuracy (mean ± std over seeds, and per seed), the bank's build time and
the training time. Several instances may run at once on one ``--output-dir`` (e.g. one seed
per core): finished runs are read, not re-run, and a bank being built by one waits for it.

    python benchmarks/bank_views.py --views 1 2 4 8 16 --seeds 0 1
    python benchmarks/bank_views.py --config ucmerced_pretrained_fixmatch \
        data.root=path/to/UCMerced/Images --views 2 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, cpu_name


def main() -> None:
    """Run the view counts, write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="demo_pretrained_fixmatch")
    p.add_argument("--views", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--dihedral", nargs="+", choices=["off", "on"], default=["off"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output-dir", default="runs/bench-bank-views")
    p.add_argument("--out", default="benchmarks/results/bank_views.md")
    p.add_argument("--other-load", default="not stated")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()

    import aerossl

    rows = []
    for views in args.views:
        for dihedral in args.dihedral:
            for seed in args.seeds:
                name = f"views{views}{'-dihedral' if dihedral == 'on' else ''}-s{seed}"
                run_dir = Path(args.output_dir) / name
                summary_file = run_dir / "summary.json"
                if not summary_file.is_file():
                    aerossl.train(args.config, [
                        *args.overrides, f"bank.views={views}", f"seed={seed}",
                        f"bank.dihedral={'true' if dihedral == 'on' else 'false'}",
                        f"name={name}", f"output_dir={args.output_dir}",
                        f"train.num_threads={args.threads}", "train.progress=false",
                        f"bank.dir={Path(args.output_dir) / 'banks'}"], run_dir=run_dir)
                s = json.loads(summary_file.read_text())
                rows.append({"views": views, "dihedral": dihedral, "seed": seed,
                             "acc": s["final_acc"], "bank_minutes": s.get("bank_minutes", 0.0),
                             "minutes": s["minutes"], "steps": s["steps"]})
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    lines = [f"# View-bank size: test accuracy against banked views per image ({args.config})",
             "", f"- Date: {dt.date.today()}; machine: {cpu_name()}, {args.threads} thread(s), "
             "one run at a time, no GPU.", f"- Command: `{command('bank_views.py')}`",
             f"- Other load on the machine: {args.other_load}",
             "- Every row: same config, split and step budget; only `bank.views` differs "
             "(weak and strong draws per image) and `bank.dihedral`; bank build minutes: the run "
             "that built the bank (a run that found it built shows 0).", "",
             "| views | dihedral | accuracy (mean ± std) | per seed | bank build (min) | "
             "training (min) | steps |",
             "|---|---|---|---|---|---|---|"]
    for views in args.views:
        for dihedral in args.dihedral:
            sel = [r for r in rows if r["views"] == views and r["dihedral"] == dihedral]
            accs = np.array([100 * r["acc"] for r in sel])
            std = accs.std(ddof=1) if len(accs) > 1 else 0.0
            lines.append(f"| {views} | {dihedral} | {accs.mean():.1f} ± {std:.1f} | "
                         f"{', '.join(f'{a:.1f}' for a in accs)} | "
                         f"{np.mean([r['bank_minutes'] for r in sel]):.2f} | "
                         f"{np.mean([r['minutes'] for r in sel]):.2f} | {sel[0]['steps']} |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
