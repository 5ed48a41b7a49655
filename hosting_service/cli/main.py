"""Entry point of ``dicom-host`` (exit statuses: :mod:`hosting_service.cli.exits`)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from hosting_service.cli import instance, run, serve
from hosting_service.cli.exits import EXIT_INTERRUPTED

SUBCOMMANDS = [serve, instance, run]


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
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
