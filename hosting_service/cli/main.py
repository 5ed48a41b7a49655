"""Entry point of ``dicom-host`` (exit statuses: :mod:`hosting_service.cli.exits`)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib import metadata
from typing import Optional

from hosting_service.cli import conformance, instance, jobs, run, serve, worker
from hosting_service.cli.exits import EXIT_INTERRUPTED
from hosting_service.cli.help_text import make_plain

SUBCOMMANDS = [serve, instance, run, conformance, jobs, worker]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-host",
        description="DICOM PS3.19 Hosting System: serve the HostService, manage instances, run hosted applications.",
    )
    parser.add_argument("--version", action="version", version=f"dicom-host {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    make_plain(parser)
    return parser


def _version() -> str:
    try:
        return metadata.version("dicom-host")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.handler(args) or 0
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
        return status
    except KeyboardInterrupt:
        print("dicom-host: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # piped into head and the like: stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
