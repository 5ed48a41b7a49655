"""Launching a hosted application and ending it, whatever it does.

The application runs as ``<command> [args] --hostURL U1 --applicationURL U2 [passthrough args]`` (PS3.19 §7.1),
built as an argv list and never given to a shell, so a URL or a path with spaces or quotes cannot change the
command. It gets a process group of its own: the host's Ctrl-C does not reach it (the host decides how to
stop it, PS3.19 §7.2), and a hard abort reaches every process the application started. It dies with the
run (:mod:`.lifeline`), even when the run is killed.
"""
from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Optional, Protocol, Sequence

from hosting_service.orchestration.lifeline import dying_with
from hosting_service.processes import describe_exit

OutputSink = Callable[[str, str], None]
"""Called with ``(stream, line)`` for every line the application writes; ``stream`` is stdout or stderr."""


class LaunchError(Exception):
    """The application command cannot be started (bad quoting, not found, not executable)."""


def application_argv(command: str, host_url: str, application_url: str, passthrough: list[str]) -> list[str]:
    """The argv of the launch: the command split as a POSIX shell would split it (without running one), the
    two URLs of the standard, then the extra arguments for the application."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise LaunchError(f"--app {command!r}: {exc}") from None
    if not words:
        raise LaunchError("--app is empty: give the command that starts the application")
    return [*words, "--hostURL", host_url, "--applicationURL", application_url, *passthrough]


class AppHandle(Protocol):
    """What the orchestration needs of a launched application: an :class:`AppProcess`, or anything with its
    surface (an application container)."""

    argv: list[str]
    started_at: float

    @property
    def pid(self) -> int: ...

    def poll(self) -> Optional[int]: ...

    def wait(self, timeout: float) -> Optional[int]: ...

    def abort(self, term_grace: float = 1.0) -> str: ...

    def kill(self) -> None: ...

    def drain_output(self, timeout: float) -> None: ...

    def describe_exit(self) -> str: ...


class Launcher(Protocol):
    """How a job's application is started, once the server has created its instance."""

    @property
    def application_url(self) -> Optional[str]:
        """The ``--applicationURL`` to create the instance with (``None``: a free loopback port)."""
        ...

    def launch(self, host_url: str, application_url: str, app_args: Sequence[str], sink: OutputSink) -> AppHandle:
        """Start the application with the standard's two URLs and ``app_args``; :class:`LaunchError` if it
        cannot be started."""
        ...


@dataclass
class ProcessLauncher:
    """The application as a child process of this one (``dicom-host run``, a worker's job)."""

    command: str
    """Split like a shell would (:func:`application_argv`)."""
    environment: dict[str, str] = field(default_factory=dict)
    cwd: Optional[str] = None
    application_url: Optional[str] = None

    def launch(self, host_url: str, application_url: str, app_args: Sequence[str], sink: OutputSink) -> "AppProcess":
        argv = application_argv(self.command, host_url, application_url, list(app_args))
        return AppProcess(argv, sink, environment=self.environment, cwd=self.cwd)


class AppProcess:
    """One running application: its output is read line by line into ``sink`` on two daemon threads."""

    def __init__(self, argv: list[str], sink: OutputSink, *, environment: Optional[dict[str, str]] = None,
                 cwd: Optional[str] = None):
        """``environment``: variables added to this process's own; ``cwd``: the working folder.

        The parent-death signal fires when the *thread* that forks the child ends (:mod:`.lifeline`): start
        an application from a thread that lives at least as long as the application (the main thread of
        ``dicom-host run``, a job's thread in ``dicom-host worker``)."""
        self.argv = argv
        env = {**os.environ, **environment} if environment else None
        try:
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=dying_with(os.getpid()), env=env, cwd=cwd,
            )
        except OSError as exc:
            where = f" in {cwd}" if cwd and isinstance(exc, FileNotFoundError) and exc.filename == cwd else ""
            raise LaunchError(f"cannot start {argv[0]!r}{where}: {exc.strerror or exc}") from None
        self._pidfd = _pidfd(self._popen.pid)
        self.started_at = time.monotonic()
        """When it was launched (``time.monotonic()``): the startup timeout counts from here."""
        self._readers = [
            threading.Thread(target=_pump, args=(pipe, name, sink), name=f"app-{name}", daemon=True)
            for pipe, name in ((self._popen.stdout, "stdout"), (self._popen.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> Optional[int]:
        """The exit status if the process has ended (negative: killed by that signal), else ``None``."""
        return self._popen.poll()

    def wait(self, timeout: float) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the end of the process; its exit status, or ``None``.

        On Linux a pidfd wakes the wait the moment the process ends (``Popen.wait`` polls with sleeps of up
        to 50 ms, which every job would pay at its EXIT)."""
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], max(timeout, 0.0))
            code = self._popen.poll()
            if code is not None:
                os.close(self._pidfd)
                self._pidfd = None
            return code
        try:
            return self._popen.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def abort(self, term_grace: float = 1.0) -> str:
        """Hard abort (PS3.19 §7.2 note): SIGTERM to the process group, SIGKILL to it after ``term_grace``
        seconds. Returns how the process ended: ``exited``, ``terminated`` or ``killed``.

        Processes the application left behind in its group are ended too, even when the application itself
        had already exited."""
        how = "exited" if self.poll() is not None else "terminated"
        self._signal_group(signal.SIGTERM)
        if self.wait(term_grace) is None:
            how = "killed"
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        self.drain_output(1.0)
        return how

    def kill(self) -> None:
        """SIGKILL to the process group, from any thread; the thread that runs the job sees the end and
        reaps the process (:meth:`abort` is for that thread). Nothing once it has been reaped: its number
        may belong to another process group by then."""
        if self._popen.returncode is None:
            self._signal_group(signal.SIGKILL)

    def drain_output(self, timeout: float) -> None:
        """Wait until the application's last output lines have reached the sink (its pipes are closed)."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(deadline - time.monotonic(), 0.0))

    def describe_exit(self) -> str:
        """``exit status N`` or ``killed by SIGNAME`` for the ended process."""
        return describe_exit(self.poll())

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is empty: everything in it has ended


def _pidfd(pid: int) -> Optional[int]:
    """A file descriptor that becomes readable when process ``pid`` ends (Linux >= 5.3), else ``None``."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _pump(pipe: IO[bytes], stream: str, sink: OutputSink) -> None:
    with pipe:
        for raw in iter(pipe.readline, b""):
            sink(stream, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
