"""Prometheus metrics of a server: what other modules record, and the ``/metrics`` answer.

Other modules call the functions here (:func:`soap_call`, :func:`uploaded`, :func:`lease_expired`); they
cost one ``None`` check in a process that serves no metrics (``dicom-host run``'s runner, a worker, a
test harness), because nothing records until :func:`enable` is called, which :class:`hosting_service.app.
HostingApp` does in each server worker.

``dicom-host serve`` runs several gunicorn worker processes, each counting its own calls. So that a scrape
answered by any one of them shows the whole server, the counters live in prometheus-client's multiprocess
files: ``serve`` creates a private, empty folder for them before gunicorn forks
(:func:`prepare_multiprocess_dir`, named in ``PROMETHEUS_MULTIPROC_DIR``), gunicorn's hooks
(``cli/gunicorn_conf.py``) mark a dead worker's files and remove the folder when the server exits, and a
scrape merges every worker's files. Without that variable (an in-process server in a test) the counters
are the process's own.

The gauges ``dicomhost_instances{state}`` and ``dicomhost_jobs{state}`` are not counted anywhere: they are
read from the store at each scrape, so every frontend of one database answers the same. The answer holds
no token, id or path: only operation names, fault codes, states and numbers (``/metrics`` needs no token).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from hosting_service.processes import alive

log = logging.getLogger("dicom_host.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus-client reads (at import) to keep its values in per-process files."""
_DIR_PREFIX = "dicom-host-metrics-"
_DIR_NAME = re.compile(re.escape(_DIR_PREFIX) + r"(?P<pid>\d+)-")

SOAP_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram buckets of ``dicomhost_soap_call_seconds``: most calls take a few milliseconds; a GetData
that transcodes, or a model query, can take seconds (the application's call timeout is about 30 s)."""

INSTANCE_STATES = ("none", "IDLE", "INPROGRESS", "SUSPENDED", "COMPLETED", "CANCELED", "EXIT")
"""Label values of ``dicomhost_instances``: the state an instance last reported (``none`` before its first
notification); always all of them, so that a series does not vanish when it drops to zero."""
JOB_STATES = ("queued", "running", "completed", "failed", "canceled")
"""Label values of ``dicomhost_jobs`` (CONTRACT section 3)."""


class _Recorder:
    """The metric objects of one process (created on :func:`enable`, after gunicorn's fork)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        folder = os.environ.get(MULTIPROC_ENV)
        self.multiprocess = bool(folder)
        if folder:  # a temp cleaner may have removed it from a long-running server: its workers must still boot
            os.makedirs(folder, mode=0o700, exist_ok=True)
        self.registry = CollectorRegistry()  # this process's own; a multiprocess scrape reads the files instead
        self.calls = Counter("dicomhost_soap_calls", "SOAP calls answered, by operation", ["operation"],
                             registry=self.registry)
        self.faults = Counter("dicomhost_soap_faults", "SOAP calls answered with a fault, by operation and "
                              "faultcode", ["operation", "code"], registry=self.registry)
        self.seconds = Histogram("dicomhost_soap_call_seconds", "time from reading a SOAP request to its answer",
                                 ["operation"], buckets=SOAP_SECONDS_BUCKETS, registry=self.registry)
        self.upload_bytes = Counter("dicomhost_upload_bytes", "bytes stored by uploads to the server",
                                    registry=self.registry)
        self.lease_expiries = Counter("dicomhost_lease_expiries", "leases that expired (their worker or runner "
                                      "gone)", registry=self.registry)
        self.store: Any = None
        self.per_operation: dict[str, tuple[Any, Any]] = {}
        """The call counter and histogram of each operation seen (a label lookup costs as much as an update)."""

    def operation(self, name: str) -> tuple[Any, Any]:
        children = self.per_operation.get(name)
        if children is None:  # two threads may both get here: labels() hands both the same children
            children = self.per_operation[name] = (self.calls.labels(name), self.seconds.labels(name))
        return children


_recorder: Optional[_Recorder] = None


def enable(store: Any) -> None:
    """Start recording in this process; ``store`` is read for the gauges at each scrape (the latest given)."""
    global _recorder
    if _recorder is None:
        _recorder = _Recorder()
    _recorder.store = store


# --- what other modules record -------------------------------------------------------------------------

def soap_call(operation: str, seconds: float, fault_code: Optional[str] = None) -> None:
    """A SOAP call answered: its operation (``request`` when unknown), duration, and fault code, if any."""
    recorder = _recorder
    if recorder is None:
        return
    calls, durations = recorder.operation(operation)
    calls.inc()
    durations.observe(seconds)
    if fault_code is not None:
        recorder.faults.labels(operation, fault_code).inc()


def uploaded(nbytes: int) -> None:
    """Bytes stored by an upload that completed (an http: output location, a job's inputs)."""
    if _recorder is not None:
        _recorder.upload_bytes.inc(nbytes)


def lease_expired() -> None:
    """A job's or an instance's lease expired and was reaped."""
    if _recorder is not None:
        _recorder.lease_expiries.inc()


# --- the /metrics answer -------------------------------------------------------------------------------

def exposition() -> tuple[bytes, str]:
    """The body and Content-Type of a ``/metrics`` answer: the counters (of every worker of this server)
    and the gauges read from the store now. Raises ``RuntimeError`` when :func:`enable` was not called."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    recorder = _recorder
    if recorder is None:
        raise RuntimeError("metrics are not enabled in this process")
    if recorder.multiprocess:
        counters = CollectorRegistry()
        MultiProcessCollector(counters)
    else:
        counters = recorder.registry
    gauges = CollectorRegistry()
    gauges.register(_StoreGauges(recorder.store))
    return generate_latest(counters) + generate_latest(gauges), CONTENT_TYPE_LATEST


class _StoreGauges:
    """A prometheus-client collector reading instances and jobs by state from the store at each scrape."""

    def __init__(self, store: Any):
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        instances = dict.fromkeys(INSTANCE_STATES, 0)
        with self.store.reading() as db:
            for row in db.execute("SELECT COALESCE(reported_state, 'none') AS state, COUNT(*) AS n "
                                  "FROM instances WHERE ended_at IS NULL GROUP BY COALESCE(reported_state, 'none')"):
                instances[row["state"]] = row["n"]
        family = GaugeMetricFamily("dicomhost_instances", "instances not yet ended, by the state they last "
                                   "reported", labels=["state"])
        for state, n in instances.items():
            family.add_metric([state], n)
        yield family
        family = GaugeMetricFamily("dicomhost_jobs", "jobs by state", labels=["state"])
        for state, n in self._jobs().items():
            family.add_metric([state], n)
        yield family

    def _jobs(self) -> dict[str, int]:
        """Jobs by state (every state listed, so that a series does not vanish at zero)."""
        jobs = dict.fromkeys(JOB_STATES, 0)
        with self.store.reading() as db:
            for row in db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
                jobs[row["state"]] = row["n"]
        return jobs


# --- the multiprocess folder (dicom-host serve, gunicorn's hooks) ---------------------------------------

def prepare_multiprocess_dir() -> str:
    """Create this server's private, empty folder for the workers' metric files (mode 0700, in the temp
    folder: never on a shared data volume, where the files of two frontends would mix), after removing
    those that servers no longer running left behind (killed by SIGKILL: no exit hook ran)."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob(_DIR_PREFIX + "*"):
        match = _DIR_NAME.match(stale.name)
        if match and stale.is_dir() and stale.stat().st_uid == os.getuid() and not alive(int(match["pid"])):
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=base)


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the live-gauge files of a dead worker (its counters stay counted)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, path)


def remove_multiprocess_dir() -> None:
    """gunicorn's ``on_exit``: remove the folder :func:`prepare_multiprocess_dir` made (only such a one)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and Path(path).name.startswith(_DIR_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
