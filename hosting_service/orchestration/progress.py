"""What a person or a program sees of a run while it goes.

Every event of the run (the store's: ``state``, ``status``, ``warning``, ``outputs``, ``upload``...; and the
orchestration's own: ``task``, ``retrieved``, ``log``...) goes to :meth:`Reporter.emit`. With ``--json`` each
one becomes a JSON line on stdout, ``{"t": seconds since the start, "kind": ..., "data": {...}}``, for
machines. On a terminal, one status line is redrawn in place (state,
inputs fetched, outputs received, bytes) with statuses, warnings and the application's output printed
above it. Otherwise only what a person must not miss goes to the ``alerts`` stream (stderr): inputs that
were skipped and the host's own warnings (an output it refused to read).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, TextIO

_REDRAW_SECONDS = 0.1


@dataclass
class Tally:
    """The counters of the status line."""

    state: str = "starting"
    task: str = ""
    offered: int = 0
    fetched: int = 0
    announced: int = 0
    received: int = 0
    bytes: int = 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class Reporter:
    """Thread-safe: the application's output arrives from reader threads."""

    def __init__(self, *, json_stream: Optional[TextIO] = None, terminal: Optional[TextIO] = None,
                 alerts: Optional[TextIO] = None, command: str = "dicom-host run"):
        self.command = command
        """Names the command on the ``alerts`` lines."""
        self.json_stream = json_stream
        self.terminal = terminal
        self.alerts = alerts
        """Without a terminal, where the lines of :data:`ALERT_KINDS` go."""
        self.tally = Tally()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._line_shown = False
        self._drawn_at = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def emit(self, kind: str, data: Optional[dict[str, Any]] = None) -> None:
        data = data or {}
        with self._lock:
            if self.json_stream is not None:
                line = {"t": round(self.elapsed(), 3), "kind": kind, "data": data}
                self.json_stream.write(json.dumps(line) + "\n")
                self.json_stream.flush()
            self._count(kind, data)
            if self.terminal is not None:
                self._show(self.terminal, kind, data)
            elif self.alerts is not None and kind in ALERT_KINDS:
                self.alerts.write(f"{self.command}: {(_above_line(kind, data) or kind).strip()}\n")
                self.alerts.flush()

    def _count(self, kind: str, data: dict) -> None:
        t = self.tally
        if kind == "state":
            t.state = data.get("to") or t.state
        elif kind == "task":
            t.task = f"task {data['number']}/{data['of']} " if data.get("of", 1) > 1 else ""
        elif kind == "offered":
            t.offered += data.get("count", 0)
        elif kind == "locator":
            t.fetched += data.get("count", 0)
        elif kind == "outputs":
            t.announced += data.get("descriptors", 0)
        elif kind == "retrieved":
            t.received += 1
            t.bytes += data.get("size", 0)

    def _show(self, terminal: TextIO, kind: str, data: dict) -> None:
        above = _above_line(kind, data)
        if above is not None:
            self._clear(terminal)
            terminal.write(above + "\n")
        now = time.monotonic()
        if above is not None or kind in ("state", "task") or now - self._drawn_at >= _REDRAW_SECONDS:
            t = self.tally
            self._clear(terminal)
            terminal.write(
                f"[{self.elapsed():6.1f}s] {t.task}{t.state} | inputs {t.fetched}/{t.offered} fetched | "
                f"outputs {t.received}/{t.announced} received, {_size(t.bytes)}"
            )
            terminal.flush()
            self._line_shown = True
            self._drawn_at = now

    def _clear(self, terminal: TextIO) -> None:
        if self._line_shown:
            terminal.write("\r\x1b[K")
            self._line_shown = False

    def close(self) -> None:
        """End the status line, so that what follows starts on a line of its own."""
        with self._lock:
            if self.terminal is not None and self._line_shown:
                self.terminal.write("\n")
                self.terminal.flush()
                self._line_shown = False


ALERT_KINDS = ("input-problem", "host-warning", "job")
"""Shown even without a terminal (on stderr)."""


def _above_line(kind: str, data: dict) -> Optional[str]:
    """The line printed above the status line for events a person should read, else ``None``."""
    if kind == "log":
        return f"  app {data.get('stream')}: {data.get('line')}"
    if kind == "status":
        meaning = data.get("CodeMeaning") or ""
        return f"  status {data.get('StatusType')} {data.get('CodeValue')} {meaning}".rstrip()
    if kind == "warning":
        return f"  warning: {data.get('message')}"
    if kind == "input-problem":
        return f"  input skipped: {data.get('path')}: {data.get('reason')}"
    if kind == "host-warning":
        return f"  warning: {data.get('message')}"
    if kind == "notice":
        return f"  {data.get('message')}"
    if kind == "job":
        details = ", ".join(f"{k} {v}" for k, v in (data.get("data") or {}).items() if isinstance(v, (str, int, float)))
        return f"  job {data.get('kind')}" + (f": {details}" if details else "")
    return None
