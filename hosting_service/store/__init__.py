"""The session store: what every worker knows about every hosted-application instance.

:func:`open_store` picks the backend from the settings: SQLite, embedded, is the default; PostgreSQL lets
several frontends share one database. Both run the same code (:mod:`.common`) on the generic database API
of :mod:`.dialect`, and the whole schema is :mod:`.schema`'s.
"""
from __future__ import annotations

from hosting_service.config import Settings
from hosting_service.store.base import (
    Event,
    InputObject,
    Instance,
    InstanceEnded,
    Locator,
    NotificationResult,
    Store,
    StoreError,
    UnknownInstance,
)
from hosting_service.store.common import SQLStore
from hosting_service.store.dialect import Database, Dialect
from hosting_service.store.permissions import private_dir
from hosting_service.store.sqlite import SQLiteStore

__all__ = [
    "Database", "Dialect", "Event", "InputObject", "Instance", "InstanceEnded", "Locator", "NotificationResult",
    "SQLStore", "SQLiteStore", "Store", "StoreError", "UnknownInstance", "open_store",
]

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def open_store(settings: Settings) -> SQLStore:
    """The deployment's store (its schema brought up to date); the data dir is made private (mode 0700, see
    :mod:`.permissions`) first, whichever the backend: it holds the instances' files.

    Raises ``ValueError`` naming ``DICOM_HOST_STORE`` for a URL of no known backend, and
    :class:`StoreError` when the database cannot be used.
    """
    url = settings.store_url
    private_dir(settings.data_dir)
    if url.startswith(POSTGRESQL_SCHEMES):
        from hosting_service.store.postgresql import PostgresStore  # psycopg only where it is used

        return PostgresStore(url, pool_size=settings.store_pool_size)
    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"DICOM_HOST_STORE: unsupported store URL {url.split('://', 1)[0]!r}..."
                         " (use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE)")
    return SQLiteStore(settings.store_path)
