"""Taking back what a vanished worker or runner held: overdue job leases and overdue instance leases.

Every frontend process reaps: a daemon thread every :data:`INTERVAL` seconds (jittered, so frontends started
together do not reap in step), and each lease request before it looks for a job. Several reapers on one
database never take back the same lease twice: the rows are claimed in a transaction that skips rows
another transaction holds (PostgreSQL) or that runs alone (SQLite).

* A job whose lease expired goes back to ``queued`` (attempts left) or to ``failed`` with the reason "lease
  expired (worker gone)", recorded as a ``lease-expired`` job event; its instance is ended.
* An instance whose lease expired (a ``dicom-host run --server`` runner that stopped heartbeating, or a job
  instance whose job was not reaped in time) is ended with the reason "runner gone".
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Optional

from hosting_service import metrics
from hosting_service.jobs.records import QUEUED, JobStore
from hosting_service.jobs.results import JobFolder
from hosting_service.jobs.uploads import sweep_stale
from hosting_service.store import InstanceEnded, UnknownInstance

log = logging.getLogger("dicom_host.jobs")

INTERVAL = 2.0
SWEEP_EVERY = 300
"""Rounds between two sweeps of stale upload staging folders (about ten minutes)."""
JOB_INSTANCE_ENDED = "job lease expired (worker gone)"
RUNNER_GONE = "runner gone (instance lease expired)"


class Reaper:
    """Reaps expired leases of one deployment (see the module docstring)."""

    def __init__(self, store, jobs: JobStore, outputs, jobs_dir):
        self.store = store
        self.jobs = jobs
        self.outputs = outputs
        self.jobs_dir = jobs_dir
        self._thread: Optional[threading.Thread] = None
        self._pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the reaping thread of this process, once (again in a forked child: threads do not survive a fork)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # also after a fork: threads do not survive it
                self._thread = threading.Thread(target=self._loop, name="lease-reaper", daemon=True)
                self._thread.start()
                self._pid = os.getpid()

    def _loop(self) -> None:
        rounds = 0
        while True:
            time.sleep(INTERVAL * random.uniform(0.75, 1.25))
            try:
                self.run_once()
                if rounds % SWEEP_EVERY == 0:
                    for folder in sweep_stale(self.jobs_dir, time.time()):
                        log.warning("removed %s: an upload a stopped server left unfinished", folder)
            except Exception:  # the database may be away for a moment: try again next round
                log.exception("lease reaper: a round failed")
            rounds += 1

    def run_once(self) -> int:
        """Reap every overdue lease now; the number of leases taken back."""
        expired = self.jobs.expire()
        for job in expired:
            metrics.lease_expired()
            log.warning("job %s: lease expired (worker gone); job %s", job.job_id,
                        "queued again" if job.state == QUEUED else job.state)
            if job.state == QUEUED:
                JobFolder(self.jobs_dir, job.job_id).discard_results()
            if job.instance_id is not None:
                self.end_instance(job.instance_id, JOB_INSTANCE_ENDED)
        overdue = self.jobs.overdue_instances()
        for instance_id, _job in overdue:
            metrics.lease_expired()
            log.warning("instance %s: %s", instance_id, RUNNER_GONE)
            self.end_instance(instance_id, RUNNER_GONE, released=True)
        return len(expired) + len(overdue)

    def end_instance(self, instance_id: str, reason: str, *, released: bool = False) -> None:
        """End an instance (if it is still live) and forget its lease (``released``: already forgotten)."""
        try:
            self.store.end_instance(instance_id, reason)
            self.outputs.after_end(instance_id)
        except (InstanceEnded, UnknownInstance):
            pass
        if not released:
            self.jobs.release_instances([instance_id])
