"""Command line: ``aerossl train|evaluate|predict|pseudo-label|export|compare|sweep|map|
suggest-labels|demo|validate|list|report|cache`` and the teacher-student stages
``pretrain|finetune|distill|noisy-student|pipeline``.

Each command lives in a module of :mod:`aerossl.commands` (its parser and a handler that calls
one :mod:`aerossl.api` function); this file only lists them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aerossl.commands import (
    cache,
    compare,
    configs,
    demo,
    evaluate,
    export,
    mapping,
    predict,
    suggest,
    sweep,
    teacher_student,
    train,
)
from aerossl.engine import distributed
from aerossl.errors import AerosslError

#: The command modules, in the order ``aerossl --help`` lists their commands.
COMMANDS = (train, evaluate, demo, configs, predict, export, compare, sweep, mapping, suggest,
            teacher_student, cache)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(prog="aerossl", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aerossl`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        code = args.func(args)
        distributed.barrier()  # under torchrun: no rank leaves the group while another works
        return code
    except AerosslError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        distributed.shutdown()  # leave the process group a torchrun-launched command joined


if __name__ == "__main__":
    sys.exit(main())
