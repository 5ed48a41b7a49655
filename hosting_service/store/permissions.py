"""The data dir and the store's files are private to the account the server runs as.

The store holds every instance's token in clear (a hostURL token is the application's identity, an
output location's token its only credential), so nobody else on the machine may read it: the data dir is
made mode 0700 and the store's files 0600, when created and, for a deployment made before this rule,
when opened. SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file, so
creating that file 0600 before SQLite opens it covers them; existing ones are corrected here too.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """``path`` as a directory with mode 0700 (made so if it exists); missing parents get the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        path.chmod(PRIVATE_DIR)
    return path


def private_database(path: Path) -> Path:
    """Create the SQLite file ``path`` with mode 0600 unless it exists, and bring it and its companion
    files (WAL, shared memory, rollback journal) to 0600 if they are more open."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            if stat.S_IMODE(file.stat().st_mode) & ~PRIVATE_FILE:
                file.chmod(PRIVATE_FILE)
        except FileNotFoundError:
            pass
    return path
