"""``aerossl cache list|prune``: what the cache folder holds, and freeing its disk."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from aerossl import api


def _table(entries: list) -> str:
    rows = ["| kind | size | last used | what | path |", "|---|---|---|---|---|"]
    for e in entries:
        used = dt.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        rows.append(f"| {e.kind} | {e.size / 1e9:.2f} GB | {used} | {e.source} | {e.path} |")
    return "\n".join(rows)


def _list(args: argparse.Namespace) -> int:
    entries = api.cache_list(args.dir)
    if not entries:
        print("the cache folder is empty")
        return 0
    print(_table(entries))
    print(f"\n{len(entries)} entries, {sum(e.size for e in entries) / 1e9:.2f} GB in all")
    return 0


def _prune(args: argparse.Namespace) -> int:
    chosen, problems = api.cache_prune(args.dir, args.older_than, args.max_gb, args.all,
                                       args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if chosen:
        print(_table(chosen))
    print(f"{verb} {len(chosen)} entries, {sum(e.size for e in chosen) / 1e9:.2f} GB")
    for line in problems:
        print(f"not removed: {line}")
    return 1 if problems else 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("cache", help="list the image caches and view banks, or prune them")
    actions = p.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="entries, their size and last use, oldest first")
    pr = actions.add_parser(
        "prune", help="remove entries (runs rebuild what they need)",
        description="Remove entries unused for --older-than days, then the least recently used "
        "until the folder holds --max-gb; or everything with --all.")
    pr.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                    help="remove what no run used for this many days")
    pr.add_argument("--max-gb", type=float, default=None, metavar="GB",
                    help="then remove the least recently used until this much is left")
    pr.add_argument("--all", action="store_true", help="remove every entry")
    pr.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    for q in (ls, pr):
        q.add_argument("--dir", default=None,
                       help="the cache folder (default: $AEROSSL_CACHE_DIR or ~/.cache/aerossl)")
    ls.set_defaults(func=_list)
    pr.set_defaults(func=_prune)
