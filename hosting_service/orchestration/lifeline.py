"""Processes the run starts end with the run, even when it is killed (SIGKILL included).

On Linux each child asks the kernel, between fork and exec, for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), so a ``dicom-host run`` killed with SIGKILL leaves neither its application
nor its embedded server running (gunicorn's workers follow their master: they leave when it has gone).
The signal comes when the *thread* that started the child ends, so children are started from a thread
that outlives them: the main thread of ``dicom-host run``, and in ``dicom-host worker`` the thread of the
job, which ends only once its application has been reaped. Elsewhere the request is skipped: the run's own handlers still end its children on every
signal it can catch.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable, Optional

_PR_SET_PDEATHSIG = 1


def _prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up here: between fork and exec nothing may be imported or loaded


def dying_with(parent: int, sig: signal.Signals = signal.SIGKILL) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when ``parent`` (the caller's
    pid) dies; a child whose parent died before the request took effect ends at once. ``None`` where the
    platform cannot do this."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), sig)

    return preexec
