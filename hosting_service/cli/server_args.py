"""The options every command that talks to a running server shares: ``--server``, and the admin token from
``--admin-token-file FILE``, ``DICOM_HOST_ADMIN_TOKEN`` or (visible to every user through ``ps``)
``--admin-token``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

from hosting_service.config import ENV_PREFIX, Settings

DEFAULT_SERVER = "http://127.0.0.1:8080"
TOKEN_VARIABLE = ENV_PREFIX + "ADMIN_TOKEN"
MAX_TOKEN_FILE = 4096


class TokenError(Exception):
    """The admin token cannot be read (the message says where and why)."""


def add_server_arguments(parser: argparse.ArgumentParser, *, server: Optional[str] = DEFAULT_SERVER,
                         server_help: Optional[str] = None) -> None:
    """``--server`` (``server``: its default; ``None``: no default) and the admin token options."""
    parser.add_argument("--server", default=server, metavar="URL", required=False,
                        help=server_help or f"the server's URL (default {server})")
    add_token_arguments(parser)


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin-token-file", type=Path, metavar="FILE",
                        help=f"read the bearer token of the server's admin API from FILE (default: the "
                        f"{TOKEN_VARIABLE} environment variable)")
    parser.add_argument("--admin-token", metavar="TOKEN",
                        help="the bearer token itself; other users of the machine see it in ps, so prefer "
                        f"--admin-token-file or {TOKEN_VARIABLE}")


def admin_token(args: argparse.Namespace) -> Optional[str]:
    """The token of ``--admin-token``, else of ``--admin-token-file``, else of ``DICOM_HOST_ADMIN_TOKEN``;
    ``None`` when none is given."""
    if getattr(args, "admin_token", None):
        return str(args.admin_token)
    path: Optional[Path] = getattr(args, "admin_token_file", None)
    if path is not None:
        return _read_token_file(path)
    try:
        return Settings.from_env({TOKEN_VARIABLE: os.environ.get(TOKEN_VARIABLE, "")}).admin_token
    except ValueError as exc:
        raise TokenError(str(exc)) from None


def _read_token_file(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise TokenError(f"--admin-token-file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TOKEN_FILE:
        raise TokenError(f"--admin-token-file {path}: more than {MAX_TOKEN_FILE} bytes; it should hold the token only")
    token = raw.decode("utf-8", errors="replace").strip()
    if not token or any(c.isspace() for c in token):
        raise TokenError(f"--admin-token-file {path}: it should hold the token alone, on one line")
    return token
