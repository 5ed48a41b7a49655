"""Leases kept alive: the server ends what a runner or worker holds once its heartbeats stop.

A :class:`Heartbeat` calls ``beat()`` every ``interval`` seconds on a daemon thread until it is stopped or
``beat()`` says there is no lease left to keep. ``dicom-host run --server`` renews its instance's lease
(:func:`instance_heartbeat`); ``dicom-host worker`` renews each job's lease (:mod:`.jobworker`), which
covers the job's instance.
"""
from __future__ import annotations

import threading
from typing import Callable

from hosting_service.admin.client import AdminClient, AdminError

STOP_WAIT = 1.0
"""Seconds :meth:`Heartbeat.stop` waits for a beat in flight."""
LEASE_GONE = (404, 405, 409, 410)
"""Answers that mean there is no lease to renew (ended, unknown, or a server without leases)."""


class Heartbeat:
    def __init__(self, beat: Callable[[], bool], interval: float, *, name: str):
        """``beat()`` renews the lease; it returns False when there is nothing left to renew."""
        self._beat = beat
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._beat():
                return

    def stop(self) -> None:
        """No more beats. A beat in flight is not waited for beyond a moment (the thread is a daemon): a
        server that does not answer must not hold up the end of a run."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT)


def instance_heartbeat(admin: AdminClient, instance_id: str, lease_seconds: float) -> Heartbeat:
    """Renew an instance's lease every third of it; a server that has ended the instance (or knows no
    leases) stops it, a server that does not answer is asked again at the next beat."""

    def beat() -> bool:
        try:
            admin.heartbeat_instance(instance_id)
        except AdminError as exc:
            return exc.status not in LEASE_GONE
        return True

    return Heartbeat(beat, lease_seconds / 3, name="instance-lease").start()
