"""What the host says about processes: whether one still runs, and how one ended (for a person to read)."""
from __future__ import annotations

import os
import signal
from typing import Optional


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(code: Optional[int]) -> str:
    """``exit status N``, ``killed by SIGNAME`` (a negative code, as subprocess gives), or ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
