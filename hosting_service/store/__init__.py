"""The session store: what every worker knows about every hosted-application instance.

:func:`open_store` picks the backend from the settings (SQLite, embedded, is the default).
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
from hosting_service.store.permissions import private_dir
from hosting_service.store.sqlite import SQLiteStore

__all__ = [
    "Event", "InputObject", "Instance", "InstanceEnded", "Locator", "NotificationResult", "Store",
    "StoreError", "UnknownInstance", "SQLiteStore", "open_store",
]


def open_store(settings: Settings) -> SQLiteStore:
    """The deployment's store; the data dir is made private (mode 0700, see :mod:`.permissions`) first."""
    if settings.store_url and not settings.store_url.startswith("sqlite:///"):
        raise ValueError(f"DICOM_HOST_STORE: unsupported store {settings.store_url!r} (use sqlite:///PATH)")
    private_dir(settings.data_dir)
    return SQLiteStore(settings.store_path)
