"""How a hosted application is launched (PS3.19 §7.1): ``--hostURL U1 --applicationURL U2`` (flags in any
case, ``=`` form too), then the kit's options and the application's own."""
from __future__ import annotations

import argparse
import urllib.parse
from typing import Sequence

LAUNCH_FLAGS = ("--hostURL", "--applicationURL")
"""PS3.19 §7.1; XIP applications compare them ignoring case, so does this kit."""


def normalize_launch_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` with the launch flags spelled canonically (``--HOSTURL x``, ``--hosturl=x`` ...)."""
    canonical = {flag.lower(): flag for flag in LAUNCH_FLAGS}
    result = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        result.append(canonical.get(flag.lower(), flag) + sep + value)
    return result


def comma_list(text: str) -> tuple[str, ...]:
    """An option value ``A,B,C`` as a tuple; at least one item."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("give at least one value")
    return items


def http_url(text: str) -> str:
    """An option value that must be an absolute http(s) URL."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute http: URL")
    return text


def launch_parser(prog: str, description: str, *, output_protocols: tuple[str, ...],
                  transfer_syntaxes: tuple[str, ...], cancel_grace: float) -> argparse.ArgumentParser:
    """The launch flags and the kit's options, with the application's defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--hostURL", required=True, type=http_url, help="the Host's HostService endpoint")
    parser.add_argument("--applicationURL", required=True, type=http_url, help="where to serve ApplicationService")
    parser.add_argument(
        "--output-protocols", type=comma_list, default=output_protocols, metavar="P1,P2",
        help=f"GetOutputLocation preference (default {','.join(output_protocols)})",
    )
    parser.add_argument(
        "--transfer-syntaxes", type=comma_list, default=transfer_syntaxes, metavar="UID1,UID2",
        help="acceptable transfer syntaxes for inputs, preferred first (default Explicit then Implicit VR LE)",
    )
    parser.add_argument(
        "--cancel-grace", type=float, default=cancel_grace, metavar="SECONDS",
        help=f"wait this long for a canceled task to stop before going IDLE (default {cancel_grace:g})",
    )
    return parser
