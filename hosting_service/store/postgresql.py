"""The shared session store: PostgreSQL, for several frontends (``dicom-host serve`` on several machines) on
one database.

Each process has its own ``psycopg_pool.ConnectionPool`` (at most ``DICOM_HOST_STORE_POOL_SIZE``
connections), opened on first use: gunicorn forks its workers from a master that has used none, and a
process that finds a pool made by its parent (a fork after use) opens a new one and leaves the parent's
alone. Transactions are READ COMMITTED; one given a ``key`` (an instance id) first takes
``pg_advisory_xact_lock(hashtextextended(key, 0))``, so the read-modify-writes of one instance never
interleave, across processes and machines, while other instances proceed in parallel.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from hosting_service.store.base import StoreError
from hosting_service.store.common import SQLStore
from hosting_service.store.dialect import POSTGRESQL, Cursor, Database, Params, format_placeholders
from hosting_service.store.schema import migrate

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when connecting (libpq ``connect_timeout``)."""
POOL_TIMEOUT = 30.0
"""Seconds a request waits for a free connection of its process's pool before it fails."""
CHECK_TIMEOUT = 5.0
"""Seconds :meth:`PostgresStore.check` waits (``/healthz`` must answer quickly)."""


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class _Connection:
    """A pooled connection as the generic :class:`~.dialect.Database`: ``?`` placeholders, dict rows."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]):
        self._conn = conn

    def execute(self, sql: str, params: Params = (), /) -> Cursor:
        return self._conn.execute(format_placeholders(sql), params)

    def executemany(self, sql: str, seq_of_params: Iterable[Params], /) -> Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(format_placeholders(sql), seq_of_params)
        return cursor


class PostgresStore(SQLStore):
    """:class:`hosting_service.store.base.Store` on a PostgreSQL database."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, pool_size: int = 8):
        super().__init__()
        if pool_size < 1:
            raise ValueError("the store's pool size must be at least 1")
        self.url = url
        self.pool_size = pool_size
        self._pool: Optional[ConnectionPool] = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        try:
            # a first connection of its own: an unreachable server or a refused login is reported at once,
            # with libpq's reason, rather than after the pool's timeout
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
            migrate(self)
        except (psycopg.Error, PoolTimeout) as exc:
            self.close()
            raise StoreError(f"the store {redacted(url)} cannot be used: {exc}") from None

    def __repr__(self) -> str:
        return f"PostgresStore({redacted(self.url)!r})"

    def _connections(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._pool_lock:
            if self._pool_pid != os.getpid():
                # none yet, or made by the parent before a fork: the parent's sockets are never used here, and
                # dropping the object closes nothing (psycopg finishes a connection only in its own process)
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url, min_size=1, max_size=self.pool_size, timeout=POOL_TIMEOUT, open=True,
                    name="dicom-host-store",
                    kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT,
                            "application_name": "dicom-host"})
                self._pool_pid = os.getpid()
            return self._pool

    @contextmanager
    def transaction(self, key: Optional[str] = None) -> Iterator[Database]:
        """A READ COMMITTED transaction on a pooled connection; with ``key``, holding the advisory lock of
        ``key`` until it ends."""
        if getattr(self._local, "db", None) is not None:
            raise RuntimeError("a store transaction cannot be opened inside another one")
        with self._connections().connection() as conn, conn.transaction():
            if key is not None:
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            db = self._local.db = _Connection(conn)
            try:
                yield db
            finally:
                self._local.db = None

    @contextmanager
    def reading(self) -> Iterator[Database]:
        """A pooled connection in autocommit (each statement reads what is committed when it starts); inside
        a transaction of this thread, that transaction's connection (as on SQLite)."""
        current = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self._connections().connection() as conn:
            yield _Connection(conn)

    def check(self) -> None:
        try:
            with self._connections().connection(timeout=CHECK_TIMEOUT) as conn:
                conn.execute("SELECT 1").fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"the store {redacted(self.url)} does not answer: {exc}") from None

    def close(self) -> None:
        """Close this process's pool (a later call opens a new one)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()
