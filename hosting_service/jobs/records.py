"""The job queue in the store: jobs, their events, their leases, and the leases of instances.

Every change of a job locks its row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN
IMMEDIATE`` serialises all writers) and writes its event in the same transaction, so the state and the event
that reports it never disagree, and several frontends on one database can serve the same jobs. Leasing takes
the oldest queued job that no other transaction holds (``SKIP LOCKED``), within each app's ``max_running``.

A job goes ``queued`` -> ``running`` (leased by a worker) -> ``completed`` | ``failed`` | ``canceled``; a failed
attempt or a lost lease puts it back to ``queued`` while it has attempts left (``retries`` of its app).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from hosting_service.config import Settings
from hosting_service.errors import ClientError
from hosting_service.orchestration.outcome import Result
from hosting_service.tokens import new_token

QUEUED, RUNNING, COMPLETED, FAILED, CANCELED = "queued", "running", "completed", "failed", "canceled"
STATES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELED)
FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELED})
RESULTS = tuple(result.value for result in Result)
"""What a worker reports with ``finish``: the outcomes of ``dicom-host run``, spelled as in its manifest."""
RETRIED_RESULTS = frozenset(r.value for r in (Result.APP_FAILED, Result.TIMEOUT, Result.SERVER, Result.INTERNAL))
LEASE_EXPIRED = "lease expired (worker gone)"
MAX_REASON = 2000


class JobNotFound(ClientError):
    http_status = 404


class JobConflict(ClientError):
    """The job is not in a state that allows the request (finished, not leased by the caller)."""

    http_status = 409


@dataclass
class Job:
    id: str
    app: str
    state: str
    options: dict[str, Any]
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    attempts: int
    max_attempts: int
    worker: Optional[str]
    lease: Optional[str]
    lease_expires_at: Optional[float]
    cancel_requested: bool
    instance_id: Optional[str]
    result: Optional[str]
    reason: Optional[str]
    inputs_count: int
    inputs_bytes: int

    @classmethod
    def from_row(cls, row: Any) -> "Job":
        d = dict(row)
        d["options"] = json.loads(d["options"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        """The job as the admin API shows it (never its lease token)."""
        return {
            "id": self.id, "app": self.app, "state": self.state, "options": self.options,
            "attempts": self.attempts, "maxAttempts": self.max_attempts, "worker": self.worker,
            "instanceId": self.instance_id, "createdAt": self.created_at, "startedAt": self.started_at,
            "finishedAt": self.finished_at, "result": self.result, "reason": self.reason,
            "cancelRequested": self.cancel_requested, "leaseExpiresAt": self.lease_expires_at,
            "inputs": {"count": self.inputs_count, "bytes": self.inputs_bytes},
        }


@dataclass
class Expired:
    """A job whose lease the reaper took back."""

    job_id: str
    instance_id: Optional[str]
    state: str


class JobStore:
    """Jobs and leases on the store's generic database API (``transaction``, ``reading``, ``dialect``)."""

    def __init__(self, store, settings: Settings):
        self.store = store
        self.lease_seconds = settings.lease_seconds

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with self.store.reading() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no such job: {job_id[:80]}")
        return Job.from_row(row)

    def listing(self, *, state: Optional[str] = None, limit: int = 100) -> list[Job]:
        sql, args = "SELECT * FROM jobs", []
        if state is not None:
            sql, args = sql + " WHERE state = ?", [state]
        with self.store.reading() as db:
            rows = db.execute(sql + " ORDER BY created_at DESC, id LIMIT ?", (*args, limit)).fetchall()
        return [Job.from_row(r) for r in rows]

    def events(self, job_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        with self.store.reading() as db:
            rows = db.execute("SELECT seq, at, kind, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                              (job_id, after)).fetchall()
        return [{"seq": r["seq"], "at": r["at"], "kind": r["kind"], "data": json.loads(r["data"])} for r in rows]

    # --- writing -----------------------------------------------------------------------------------------

    def _event(self, db, job_id: str, kind: str, data: dict[str, Any], at: float) -> int:
        """Append an event; the caller holds the job's row lock, so the next number is its own."""
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS next_seq FROM job_events WHERE job_id = ?",
                         (job_id,)).fetchone()["next_seq"]
        db.execute("INSERT INTO job_events (job_id, seq, at, kind, data) VALUES (?, ?, ?, ?, ?)",
                   (job_id, seq, at, kind, json.dumps(data)))
        return seq

    def _locked(self, db, job_id: str) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?" + self.store.dialect.for_update, (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no such job: {job_id[:80]}")
        return Job.from_row(row)

    def _leased(self, db, job_id: str, lease: Any) -> Job:
        """The job, locked, if ``lease`` is its current lease; :class:`JobConflict` ("lease lost") if not."""
        job = self._locked(db, job_id)
        if job.state != RUNNING or not isinstance(lease, str) or job.lease != lease:
            raise JobConflict(f"lease lost: job {job_id} is {job.state} and not leased with this token "
                              "(it expired, was taken back, or the job ended)")
        return job

    def create(self, *, app: str, options: dict[str, Any], max_attempts: int, inputs_count: int,
               inputs_bytes: int, job_id: Optional[str] = None) -> Job:
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        with self.store.transaction() as db:
            db.execute("INSERT INTO jobs (id, app, state, options, created_at, attempts, max_attempts, "
                       "cancel_requested, inputs_count, inputs_bytes) VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?, ?)",
                       (job_id, app, QUEUED, json.dumps(options), now, max_attempts, inputs_count, inputs_bytes))
            self._event(db, job_id, "queued", {"app": app, "inputs": {"count": inputs_count, "bytes": inputs_bytes}},
                        now)
        return self.get(job_id)

    def cancel(self, job_id: str) -> Job:
        """A queued job is canceled at once; a running one is asked to (its worker sees ``cancelRequested``
        in its next heartbeat); a finished one is a :class:`JobConflict`."""
        now = time.time()
        with self.store.transaction() as db:
            job = self._locked(db, job_id)
            if job.state in FINAL_STATES:
                raise JobConflict(f"job {job_id} has already ended ({job.state})")
            if job.state == QUEUED:
                db.execute("UPDATE jobs SET state = ?, finished_at = ?, result = ?, reason = ? WHERE id = ?",
                           (CANCELED, now, "canceled", "canceled before it started", job_id))
                self._event(db, job_id, "canceled", {"while": QUEUED}, now)
            elif not job.cancel_requested:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                self._event(db, job_id, "cancel-requested", {"worker": job.worker}, now)
        return self.get(job_id)

    def lease(self, worker: str, limits: dict[str, int]) -> Optional[tuple[Job, str]]:
        """Lease the oldest queued job of the apps in ``limits`` (name -> ``max_running``, 0: unlimited) to
        ``worker``: the job and its lease token, or ``None`` when there is none to take."""
        if not limits or not self._any_queued(list(limits)):
            return None  # the common answer to a waiting worker, found without a write transaction
        now = time.time()
        dialect = self.store.dialect
        capped = any(limits.values())
        # with a max_running, counting the running jobs and taking one must not interleave with another
        # frontend doing the same: those leases are serialised under one key (SQLite serialises all writers)
        with self.store.transaction(key="dicom-host:job-lease" if capped else None) as db:
            eligible = list(limits)
            if capped:
                running = {r["app"]: r["n"] for r in db.execute(
                    "SELECT app, COUNT(*) AS n FROM jobs WHERE state = ? GROUP BY app", (RUNNING,))}
                eligible = [a for a in eligible if not limits[a] or running.get(a, 0) < limits[a]]
            if not eligible:
                return None
            row = db.execute(
                f"SELECT * FROM jobs WHERE state = ? AND app IN ({','.join('?' * len(eligible))}) "
                "ORDER BY created_at, id LIMIT 1" + dialect.skip_locked, (QUEUED, *eligible)).fetchone()
            if row is None:
                return None
            job = Job.from_row(row)
            token = new_token()
            expires = now + self.lease_seconds
            db.execute("UPDATE jobs SET state = ?, worker = ?, lease = ?, lease_expires_at = ?, started_at = ?, "
                       "attempts = attempts + 1, result = NULL, reason = NULL WHERE id = ?",
                       (RUNNING, worker, token, expires, now, job.id))
            self._event(db, job.id, "leased", {"worker": worker, "attempt": job.attempts + 1}, now)
        return self.get(job.id), token

    def _any(self, sql: str, args: tuple) -> bool:
        """Whether a read finds a row: asked before a write transaction that would usually find nothing to do."""
        with self.store.reading() as db:
            return db.execute(sql, args).fetchone() is not None

    def _any_queued(self, apps: list[str]) -> bool:
        return self._any(f"SELECT id FROM jobs WHERE state = ? AND app IN ({','.join('?' * len(apps))}) LIMIT 1",
                         (QUEUED, *apps))

    def heartbeat(self, job_id: str, lease: Any) -> Job:
        """Renew the lease (and the lease of the job's instance); :class:`JobConflict` if it is lost."""
        now = time.time()
        with self.store.transaction() as db:
            self._leased(db, job_id, lease)
            db.execute("UPDATE jobs SET lease_expires_at = ? WHERE id = ?", (now + self.lease_seconds, job_id))
            db.execute("UPDATE instance_leases SET expires_at = ? + lease_seconds WHERE job_id = ?",
                       (now + self.lease_seconds, job_id))
        return self.get(job_id)

    def attach_instance(self, job_id: str, lease: Any, instance_id: str) -> None:
        """Record the instance a worker created for its leased job; the instance then lives as long as the
        job's lease (plus one lease period, the reaper's fallback should the job's own reaping be cut short)."""
        now = time.time()
        with self.store.transaction() as db:
            job = self._leased(db, job_id, lease)
            db.execute("UPDATE jobs SET instance_id = ? WHERE id = ?", (instance_id, job_id))
            db.execute("INSERT INTO instance_leases (instance_id, job_id, lease_seconds, expires_at) "
                       "VALUES (?, ?, ?, ?)", (instance_id, job_id, self.lease_seconds,
                                               (job.lease_expires_at or now) + self.lease_seconds))
            self._event(db, job_id, "instance", {"instanceId": instance_id, "attempt": job.attempts}, now)

    def check_lease(self, job_id: str, lease: Any) -> Job:
        """The job if ``lease`` is its current lease (for requests that change no row, e.g. before an upload)."""
        with self.store.transaction() as db:
            return self._leased(db, job_id, lease)

    def record_results(self, job_id: str, lease: Any, files: int, size: int) -> None:
        with self.store.transaction() as db:
            self._leased(db, job_id, lease)
            self._event(db, job_id, "results", {"files": files, "bytes": size}, time.time())

    def finish(self, job_id: str, lease: Any, result: str, reason: str) -> tuple[Job, Optional[str]]:
        """End the leased attempt with the worker's ``result``: the job (in its final state, or ``queued``
        again when the failure is one that is retried and attempts are left; never after a cancel) and the
        attempt's instance id."""
        now = time.time()
        with self.store.transaction() as db:
            job = self._leased(db, job_id, lease)
            if result == "completed":
                state = COMPLETED
            elif job.cancel_requested or result == "canceled":
                state = CANCELED
            elif result in RETRIED_RESULTS and job.attempts < job.max_attempts:
                state = QUEUED
            else:
                state = FAILED
            self._event(db, job_id, "finished", {"result": result, "reason": reason, "state": state,
                                                 "attempt": job.attempts}, now)
            self._end_attempt(db, job, state, result, reason, now)
        return self.get(job_id), job.instance_id

    def _end_attempt(self, db, job: Job, state: str, result: str, reason: str, now: float) -> None:
        if state == QUEUED:  # the next attempt starts afresh; the events keep what this one did
            db.execute("UPDATE jobs SET state = ?, worker = NULL, lease = NULL, lease_expires_at = NULL, "
                       "instance_id = NULL, started_at = NULL WHERE id = ?", (QUEUED, job.id))
            self._event(db, job.id, "requeued", {"attempt": job.attempts, "of": job.max_attempts,
                                                 "reason": reason}, now)
        else:
            db.execute("UPDATE jobs SET state = ?, lease = NULL, lease_expires_at = NULL, finished_at = ?, "
                       "result = ?, reason = ? WHERE id = ?", (state, now, result, reason, job.id))

    def expire(self, now: Optional[float] = None) -> list[Expired]:
        """Take back every overdue job lease (that no other frontend is taking back at the same moment):
        each job is queued again or failed, with a ``lease-expired`` event."""
        now = time.time() if now is None else now
        expired: list[Expired] = []
        if not self._any("SELECT id FROM jobs WHERE state = ? AND lease_expires_at < ? LIMIT 1", (RUNNING, now)):
            return expired  # the usual answer, found without taking the write lock
        with self.store.transaction() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state = ? AND lease_expires_at < ? ORDER BY lease_expires_at"
                              + self.store.dialect.skip_locked, (RUNNING, now)).fetchall()
            for row in rows:
                job = Job.from_row(row)
                if job.cancel_requested:
                    state = CANCELED
                else:
                    state = QUEUED if job.attempts < job.max_attempts else FAILED
                self._event(db, job.id, "lease-expired", {"worker": job.worker, "attempt": job.attempts,
                                                          "state": state}, now)
                self._end_attempt(db, job, state, "canceled" if state == CANCELED else "server", LEASE_EXPIRED, now)
                expired.append(Expired(job.id, job.instance_id, state))
        return expired

    # --- instance leases ---------------------------------------------------------------------------------

    def lease_instance(self, instance_id: str, seconds: float) -> None:
        """An instance that lives only while its runner renews it (``POST /admin/instances`` ``leaseSeconds``)."""
        with self.store.transaction(key=instance_id) as db:
            db.execute("INSERT INTO instance_leases (instance_id, job_id, lease_seconds, expires_at) "
                       "VALUES (?, NULL, ?, ?)", (instance_id, seconds, time.time() + seconds))

    def renew_instance(self, instance_id: str) -> bool:
        """Renew a runner's instance lease; False when the instance holds none."""
        with self.store.transaction(key=instance_id) as db:
            cur = db.execute("UPDATE instance_leases SET expires_at = ? + lease_seconds WHERE instance_id = ? "
                             "AND job_id IS NULL", (time.time(), instance_id))
            return cur.rowcount > 0

    def overdue_instances(self, now: Optional[float] = None) -> list[tuple[str, Optional[str]]]:
        """``(instance id, job id)`` of every overdue instance lease, removed here (so that one frontend ends
        each); the caller ends the instances."""
        now = time.time() if now is None else now
        if not self._any("SELECT instance_id FROM instance_leases WHERE expires_at < ? LIMIT 1", (now,)):
            return []
        with self.store.transaction() as db:
            rows = db.execute("SELECT instance_id, job_id FROM instance_leases WHERE expires_at < ?"
                              + self.store.dialect.skip_locked, (now,)).fetchall()
            for row in rows:
                db.execute("DELETE FROM instance_leases WHERE instance_id = ?", (row["instance_id"],))
        return [(r["instance_id"], r["job_id"]) for r in rows]

    def release_instances(self, instance_ids: Iterable[str]) -> None:
        """Forget the leases of instances that have ended."""
        with self.store.transaction() as db:
            for instance_id in instance_ids:
                db.execute("DELETE FROM instance_leases WHERE instance_id = ?", (instance_id,))
