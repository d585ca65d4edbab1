"""The command line's commands: one module per command (or group of commands).

Each module has ``add_parsers(subparsers)``, which registers its command(s) with argparse and
sets a handler that calls one :mod:`aerossl.api` function and prints its result. To add a
command: write a module here and list it in :data:`aerossl.cli.COMMANDS`.
"""
