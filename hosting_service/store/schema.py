"""The whole schema of the store, as ordered migrations, and how they are applied.

Every table of a deployment is created here, never by the layers that use them (:mod:`hosting_service.outputs`,
:mod:`hosting_service.models.registry`, the jobs). Each migration is applied once, in one transaction that
also records it in ``schema_version``; on PostgreSQL that transaction first takes an advisory lock, so
several frontends starting at once apply each migration once. Migration 1 creates its tables ``IF NOT
EXISTS``: a store made before schema versions existed (same tables, no ``schema_version``) is adopted as
version 1 without change.

To add a migration, append one line to :data:`MIGRATIONS`; never edit one that has shipped.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hosting_service.store.dialect import SERIAL_PRIMARY_KEY, statements

if TYPE_CHECKING:
    from hosting_service.store.common import SQLStore

# Types: times DOUBLE PRECISION, sizes and counts BIGINT, ids and JSON TEXT (see dialect.py). The session
# tables (instances ... announcements) are the store's own; output_locations/output_files belong to
# hosting_service.outputs, models/model_bulk_data to hosting_service.models.registry.
BASE = f"""
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    host_url TEXT NOT NULL,
    application_url TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    reported_state TEXT,
    requested_state TEXT,
    ended_at DOUBLE PRECISION,
    end_reason TEXT,
    options TEXT NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS events (
    seq {SERIAL_PRIMARY_KEY},
    instance_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_instance ON events (instance_id, seq);
CREATE TABLE IF NOT EXISTS inputs (
    instance_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    path TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    length BIGINT NOT NULL,
    PRIMARY KEY (instance_id, uuid)
);
CREATE TABLE IF NOT EXISTS locators (
    locator TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS locators_of_instance ON locators (instance_id);
CREATE TABLE IF NOT EXISTS announcements (
    seq {SERIAL_PRIMARY_KEY},
    instance_id TEXT NOT NULL,
    data TEXT NOT NULL,
    last_data BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS announcements_by_instance ON announcements (instance_id, seq);

CREATE TABLE IF NOT EXISTS output_locations (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    semantics TEXT NOT NULL,
    uri TEXT NOT NULL,
    token TEXT UNIQUE,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    closed_at DOUBLE PRECISION,
    closed_reason TEXT,
    deleted_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS output_locations_by_instance ON output_locations (instance_id, state);
CREATE TABLE IF NOT EXISTS output_files (
    location_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT,
    part TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (location_id, name)
);
CREATE INDEX IF NOT EXISTS output_files_by_instance ON output_files (instance_id, state);

CREATE TABLE IF NOT EXISTS models (
    uuid TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    class_uid TEXT NOT NULL,
    infoset_type TEXT NOT NULL,
    path TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    length BIGINT NOT NULL,
    sources TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    released_at DOUBLE PRECISION,
    swept BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS models_by_instance ON models (instance_id, released_at);
CREATE TABLE IF NOT EXISTS model_bulk_data (
    uuid TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    model TEXT NOT NULL,
    path TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    length BIGINT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    frame BIGINT
);
CREATE INDEX IF NOT EXISTS model_bulk_data_by_model ON model_bulk_data (model);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "base", BASE),
    # Migration 2, the jobs tables: hosting_service/jobs/schema.py (the lead adds its line here).
]
"""``(version, name, DDL)``, in the order applied; versions are 1, 2, 3 ... without gaps."""

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""

MIGRATION_LOCK = "dicom-host schema migration"
"""The key of the transaction lock every migration takes (an advisory lock on PostgreSQL)."""


def migrate(store: SQLStore, migrations: list[tuple[int, str, str]] = MIGRATIONS) -> list[int]:
    """Apply the migrations ``store`` has not had yet, each in a transaction of its own; returns their versions.

    Safe to run from several processes at once: each transaction holds the migration lock (``BEGIN
    IMMEDIATE`` on SQLite) and checks ``schema_version`` under it before applying.
    """
    expected = list(range(1, len(migrations) + 1))
    if [version for version, _name, _ddl in migrations] != expected:
        raise ValueError("schema migrations must be numbered 1, 2, 3 ... in order")
    with store.reading() as db:
        applied = _applied(store, db)
    done = []
    for version, name, ddl in migrations:
        if version in applied:
            continue
        with store.transaction(key=MIGRATION_LOCK) as db:
            db.execute(VERSION_TABLE)
            if db.execute("SELECT version FROM schema_version WHERE version = ?", (version,)).fetchone():
                continue  # another process applied it while this one waited for the lock
            for statement in statements(store.dialect.ddl(ddl)):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                       (version, name, time.time()))
        done.append(version)
    return done


def _applied(store: SQLStore, db) -> set[int]:
    """The versions recorded (none when the table does not exist yet)."""
    if db.execute(store.dialect.table_exists, ("schema_version",)).fetchone() is None:
        return set()
    return {row["version"] for row in db.execute("SELECT version FROM schema_version")}


def applied_versions(store: SQLStore) -> list[int]:
    """The migrations recorded in the store, in order (for tests and diagnostics)."""
    with store.reading() as db:
        return sorted(_applied(store, db))
