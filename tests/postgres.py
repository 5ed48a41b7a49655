"""A throwaway PostgreSQL server for tests and benchmarks, from Debian's binaries (package ``postgresql``).

``initdb`` into a temporary folder, ``pg_ctl`` with the unix socket in that folder and a free loopback port,
trust authentication for the loopback only. As root the server runs as an unprivileged account (``postgres``,
else ``nobody``) through ``runuser``, with the folder given to it. :meth:`ThrowawayPostgres.stop` stops the
server and removes the folder; it is also registered with ``atexit``, so an aborted session leaves nothing.

    with ThrowawayPostgres.start() as pg:
        url = pg.create_database()
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Optional

DEFAULT_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                   "max_connections": "400", "shared_buffers": "64MB"}
"""Durability off: the data is thrown away, and tests and benchmarks should not wait for the disk."""


def binaries() -> Optional[Path]:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, or ``None``."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if Path(p).with_name("pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _account() -> Optional[str]:
    """The account to run the server as when this process is root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """One running server; see the module docstring."""

    def __init__(self, folder: Path, port: int, bin_dir: Path, account: Optional[str]):
        self.folder = folder
        self.port = port
        self.bin_dir = bin_dir
        self.account = account
        self._stopped = False

    @property
    def url(self) -> str:
        """The URL of the maintenance database ``postgres`` (superuser ``postgres``, no password)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, options: Optional[dict[str, str]] = None, timeout: float = 60) -> "ThrowawayPostgres":
        bin_dir = binaries()
        if bin_dir is None:
            raise FileNotFoundError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (Debian package postgresql)")
        account = _account()
        folder = Path(tempfile.mkdtemp(prefix="dicom-host-pg-"))
        if account is not None:
            entry = pwd.getpwnam(account)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = cls(folder, _free_port(), bin_dir, account)
        atexit.register(server.stop)
        try:
            server._run(["initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-sync", "--locale=C"], timeout)
            settings = {**DEFAULT_OPTIONS, **(options or {}), "listen_addresses": "127.0.0.1",
                        "port": str(server.port), "unix_socket_directories": str(folder)}
            server_options = " ".join(f"-c {k}={v}" for k, v in settings.items())
            server._run(["pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-o", server_options,
                         "-w", "-t", str(int(timeout)), "start"], timeout + 10)
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, argv: list[str], timeout: float) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.account is not None:
            command = ["runuser", "-u", self.account, "--", *command]
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "server.log"
        try:
            return path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def create_database(self, name: Optional[str] = None) -> str:
        """A new empty database (default ``t_<random>``); returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and remove its folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.folder / "data" / "postmaster.pid").exists():
                self._run(["pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"], 60)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
