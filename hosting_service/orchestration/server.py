"""The Hosting System server of one ``dicom-host run`` when no ``--server`` is given.

It is the ordinary ``dicom-host serve`` (gunicorn) in a child process of its own group, with a temporary
data dir (removed at the end) or a given one (kept). Its listening socket is bound here, on a free loopback
port, and passed to the child (``serve --bind fd://N``): no other process can take the port between the
choice and the start. One worker with threads is enough for one job and starts fastest.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from hosting_service.orchestration.lifeline import dying_with
from hosting_service.orchestration.tempdirs import private_temp
from hosting_service.tokens import new_token


_HEALTH_POLL_SECONDS = 0.02


class ServerStartError(Exception):
    """The embedded server did not come up; the message holds the end of its log."""


class EmbeddedServer:
    """``with EmbeddedServer(...) as server: server.url``: started on entry, stopped on exit."""

    def __init__(self, *, data_dir: Optional[Path] = None, startup_timeout: float = 30.0,
                 log_level: str = "warning"):
        self._given_data_dir = data_dir
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.data_dir: Optional[Path] = None
        self.port = 0
        self.admin_token = new_token()
        """The admin API of this server answers only the run that started it, not the applications that
        share its loopback interface."""
        self._process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def __enter__(self) -> "EmbeddedServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        if self._given_data_dir is not None:
            self.data_dir = self._given_data_dir.resolve()
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.data_dir = private_temp("run")  # removed by the next run if this one is killed
        try:
            with socket.create_server(("127.0.0.1", 0)) as listener:
                self.port = listener.getsockname()[1]
                self._launch(listener)
            if self._await_health(time.monotonic() + self.startup_timeout):
                return
            reason = f"the embedded server did not start: {self._log_tail()}"
        except BaseException:  # an interrupt while starting: leave nothing running
            self.stop()
            raise
        self.stop()
        raise ServerStartError(reason)

    def _launch(self, listener: socket.socket) -> None:
        """Start ``serve`` on ``listener`` (the child gets its own copy; the caller closes this one)."""
        fd = listener.fileno()
        argv = [sys.executable, "-m", "hosting_service.cli.main", "serve",
                "--bind", f"fd://{fd}", "--public-url", self.url,
                "--data-dir", str(self.data_dir), "--workers", "1", "--log-level", self.log_level]
        with open(self.log_path, "ab") as log:
            env = {**os.environ, "DICOM_HOST_ADMIN_TOKEN": self.admin_token,  # not in argv, where ps shows it
                   "DICOM_HOST_INPUT_ROOTS": "/"}  # the run's inputs are on this machine, wherever they are
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True, pass_fds=(fd,),
                                             preexec_fn=dying_with(os.getpid()))

    def _await_health(self, deadline: float) -> bool:
        """True once ``/healthz`` answers; False if the process ended or the deadline passed."""
        import requests  # only runs that start their own server need it

        assert self._process is not None
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    if session.get(self.url + "/healthz", timeout=1).ok:
                        return True
                except requests.RequestException:
                    pass
                time.sleep(_HEALTH_POLL_SECONDS)
        return False

    def _log_tail(self) -> str:
        try:
            lines = [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            return "no server log"
        return lines[-1] if lines else "no output in the server log"

    def stop(self) -> None:
        """Stop gunicorn (its whole process group) and remove a temporary data dir.

        SIGINT to the gunicorn master is its quick shutdown: the run is over and every write is committed,
        so there is no request to finish (a graceful SIGTERM waits for kept-alive connections to linger
        out). gthread's own quick stop could deadlock on its thread pool's lock and be killed only 10 s
        later; the worker of :mod:`hosting_service.worker` exits without taking a lock
        (tests/test_embedded_server.py times it). Whatever is left in the group after that is killed."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None
        if self._given_data_dir is None and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
