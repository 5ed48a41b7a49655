"""Where an instance's outputs are on disk, and the moves that make them the host's.

::

    <instances_dir>/<instance id>/          mode 0700
        outputs/<location id>/              what the application may write while the location is active
        results/<location id>/              what the host owns: moved here when the location closes
        uploads/<random>.part               http: uploads in progress; never inside a location

The three folders are on one filesystem, so closing a location is one ``rename``: instant whatever the
size, and atomic. A file: application that writes after that moment finds its directory gone (files it
still holds open end up in the results, so nothing written before the moment is lost); an http: upload
is renamed into ``outputs/<location id>/`` only while the location is still active.

An upload's temporary file is locked (``flock``) by the thread writing it for as long as it writes, so
any worker can tell a live upload from one whose process died: the lock goes with the process.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import BinaryIO


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class InstanceArea:
    """The output folders of one instance (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self.outputs = root / "outputs"
        self.results = root / "results"
        self.uploads = root / "uploads"
        self.delivery_cache = root / "delivery-cache"
        """Links to the delivery cache's copies of inputs that GetData handed out (see hosting_service.dicom.cache)."""

    def live(self, location_id: str) -> Path:
        return self.outputs / location_id

    def kept(self, location_id: str) -> Path:
        return self.results / location_id

    def create(self, location_id: str) -> Path:
        """A fresh, empty, mode 0700 folder for a new location (and the instance's folders it needs, made
        with its first location: a mkdir of a folder that exists costs about as much as a new one, and
        with calls spread over many instances it was most of GetOutputLocation's time; bench/scale.py)."""
        path = self.live(location_id)
        try:
            path.mkdir(mode=0o700)  # never exist_ok: a location is always new
        except FileNotFoundError:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            for folder in (self.root, self.outputs, self.uploads):
                _private_dir(folder)
            path.mkdir(mode=0o700)
        return path

    def retire(self, location_id: str) -> None:
        """Move a location's folder into the results (a no-op if it is gone, e.g. moved already)."""
        source = self.live(location_id)
        if source.exists():
            _private_dir(self.results)
            os.rename(source, self.kept(location_id))

    @staticmethod
    def files(folder: Path) -> list[tuple[str, int]]:
        """``(name, size)`` of every regular file below ``folder``; names relative, ``/``-separated.

        Symbolic links are neither followed nor listed: the host only takes what was written here.
        """
        found: list[tuple[str, int]] = []
        for top, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(top) / name
                info = path.lstat()
                if stat.S_ISREG(info.st_mode):
                    found.append((path.relative_to(folder).as_posix(), info.st_size))
        return sorted(found)

    def delete(self) -> None:
        """Remove every output, result and partial upload of the instance (retention ``delete``)."""
        for folder in (self.outputs, self.results, self.uploads):
            shutil.rmtree(folder, ignore_errors=True)

    def drop_delivery_cache(self) -> None:
        """Remove the copies made for GetData: once the instance has ended nobody can ask for them."""
        shutil.rmtree(self.delivery_cache, ignore_errors=True)

    def new_part(self) -> tuple[BinaryIO, Path]:
        """A new temporary upload file, open for writing and locked by the caller.

        ``FileNotFoundError`` if the instance has no upload folder (its data was deleted). A reaper
        (:meth:`dead_parts`) may take the file for a dead writer's between its creation and its lock:
        then it is gone once locked, and another is made.
        """
        while True:
            path = self.uploads / f"{secrets.token_hex(12)}.part"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return os.fdopen(fd, "wb", buffering=0), path
            os.close(fd)

    def dead_parts(self) -> list[Path]:
        """Temporary upload files no live writer holds (their process was killed): left-overs to remove."""
        try:
            parts = list(self.uploads.glob("*.part"))
        except OSError:
            return []
        return [part for part in parts if not writer_alive(part)]


def writer_alive(part: Path) -> bool:
    """Whether some thread of some live process still writes the temporary upload file ``part``."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
