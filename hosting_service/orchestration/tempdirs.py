"""Private temporary folders of ``dicom-host run`` and ``dicom-host worker``, and the clean-up of those whose
owner died without removing them (SIGKILL, a crash, a power cut).

Each folder's name carries its owner's pid: ``dicom-host-run-<pid>-<random>`` (the data dir of a run's own
server) and ``dicom-host-worker-<pid>-<random>`` (a worker's job folders). :func:`remove_stale` removes the
folders of this user whose pid names no running process; ``run`` and ``worker`` call it when they start.
A reused pid only keeps a stale folder a little longer; a live owner's folder is never touched.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from hosting_service.processes import alive

KINDS = ("run", "worker")
_NAME = re.compile(r"^dicom-host-(?:run|worker)-(\d+)-")


def private_temp(kind: str, root: Optional[Path] = None) -> Path:
    """A new folder (mode 0700) in ``root`` (default: the system's temporary folder), named for ``kind``
    and this process."""
    assert kind in KINDS
    return Path(tempfile.mkdtemp(prefix=f"dicom-host-{kind}-{os.getpid()}-", dir=root))


def remove_stale(root: Optional[Path] = None) -> list[Path]:
    """Remove this user's ``dicom-host-run-*``/``dicom-host-worker-*`` folders in ``root`` (default: the
    system's temporary folder) whose owner process is gone; the folders removed."""
    root = Path(root or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not entry.is_dir(follow_symlinks=False) or info.st_uid != uid or alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed
