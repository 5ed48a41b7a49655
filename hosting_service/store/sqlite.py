"""The embedded session store: one SQLite file shared by every gunicorn worker of a deployment.

WAL journaling lets readers run beside the one writer; every write is a ``BEGIN IMMEDIATE`` transaction
(so two workers never interleave a read-modify-write, whatever its key) with a busy timeout; each thread
of each process has its own connection. State survives a restart because there is no other state.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from hosting_service.store.base import StoreError
from hosting_service.store.common import SQLStore
from hosting_service.store.dialect import SQLITE, Database
from hosting_service.store.permissions import PRIVATE_DIR, private_database
from hosting_service.store.schema import migrate


def _mapping(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    """Rows as plain dicts, as on PostgreSQL (see :mod:`.dialect`)."""
    return {column[0]: value for column, value in zip(cursor.description, row)}


class SQLiteStore(SQLStore):
    """:class:`hosting_service.store.base.Store` on one SQLite file."""

    dialect = SQLITE

    def __init__(self, path: Path, *, busy_timeout_ms: int = 30_000):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        private_database(self.path)  # it holds tokens in clear
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        migrate(self)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            # none yet, or one made before a fork: SQLite connections must not cross a fork, so the parent's
            # is left alone (not closed: that would release the parent's locks) and a new one made
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = _mapping
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextmanager
    def transaction(self, key: Optional[str] = None) -> Iterator[Database]:
        """A ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is read, so every
        write transaction is serialised and ``key`` needs no lock of its own."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[Database]:
        """This thread's connection, in autocommit: each statement reads the last committed state (or,
        inside a transaction of this thread, that transaction's)."""
        yield self._connection()

    def check(self) -> None:
        if not self.path.exists():  # its folder removed: a connection already open would still answer
            raise StoreError(f"the store {self.path} is gone")
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"the store {self.path} cannot be read: {exc}") from None

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
