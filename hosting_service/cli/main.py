"""Entry point of ``dicom-host``.

Exit codes are shared by every subcommand (``run`` adds its own for job outcomes):
0 success, 2 bad usage or configuration, 3 the server or the admin API refused or could not be reached.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from hosting_service.cli import conformance, instance, run, serve

EXIT_USAGE = 2
EXIT_SERVER = 3

SUBCOMMANDS = [serve, instance, run, conformance]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-host",
        description="DICOM PS3.19 Hosting System: serve the HostService, manage instances, run hosted applications.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("dicom-host: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
