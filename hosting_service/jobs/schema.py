"""The tables of the job queue, as portable SQL (the same text on SQLite and PostgreSQL).

* ``jobs``: one row per submitted job; its state, its current lease and what it ended with.
* ``job_events``: what happened to a job, numbered per job (``seq`` counted in the transaction that writes
  it, after the job's row is locked, so two writers never pick the same number).
* ``instance_leases``: instances that live only as long as someone keeps renewing them: a ``dicom-host run
  --server`` runner's instance (``leaseSeconds``) and a job's instance (renewed by the job's heartbeats). An
  overdue one is ended by the reaper (:mod:`hosting_service.jobs.reaper`).

The store owns the schema: this DDL is registered as migration 2 of ``hosting_service/store/schema.py``.
"""
from __future__ import annotations

JOBS_DDL = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    worker TEXT,
    lease TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    instance_id TEXT,
    result TEXT,
    reason TEXT,
    inputs_count BIGINT NOT NULL DEFAULT 0,
    inputs_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_lease ON jobs (lease_expires_at);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS instance_leases (
    instance_id TEXT PRIMARY KEY,
    job_id TEXT,
    lease_seconds DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_leases_by_expiry ON instance_leases (expires_at);
"""


def statements(ddl: str = JOBS_DDL) -> list[str]:
    """The DDL as single statements (a database driver executes one at a time)."""
    return [s.strip() for s in ddl.split(";") if s.strip()]
