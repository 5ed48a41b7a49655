"""The application's stdout and stderr: kept in the instance's event history (kind ``log``), in an
``app.log`` file beside the results, and shown to whoever watches the run.

Lines come from the reader threads of :class:`~hosting_service.orchestration.process.AppProcess`. They are
sent to the server in batches, a few times a second, so a chatty application costs a handful of requests,
not one per line; a server that stops answering loses lines from the history but never stops the job.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, TextIO

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.orchestration.progress import Reporter

APP_LOG_NAME = "app.log"
"""The file beside the results that keeps the application's output."""
_FLUSH_SECONDS = 0.25
_MAX_BATCH = 500


class AppLog:
    def __init__(self, admin: AdminClient, instance_id: str, reporter: Reporter, file: Optional[Path]):
        self.admin = admin
        """A client of its own: requests sessions are not shared between threads."""
        self.instance_id = instance_id
        self.reporter = reporter
        self._file: Optional[TextIO] = open(file, "a", encoding="utf-8") if file else None
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="app-log", daemon=True)
        self._thread.start()

    def write(self, stream: str, line: str) -> None:
        """An :data:`~hosting_service.orchestration.process.OutputSink`."""
        entry = {"stream": stream, "line": line}
        with self._lock:
            self._pending.append(entry)
            if self._file is not None:
                self._file.write(f"{stream}: {line}\n")
                self._file.flush()
        self.reporter.emit("log", entry)

    def _run(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
        if batch:
            try:
                self.admin.add_event(self.instance_id, "log", {"lines": batch})
            except AdminError:
                pass  # the history loses these lines; app.log and the --json stream still have them

    def close(self) -> None:
        """Send what is left; call after the application's output has been drained."""
        self._stop.set()
        self._thread.join()
        while self._pending:
            self._flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
