"""The delivery cache: transcoded copies of inputs, shared by every worker and process of a deployment, bounded
in size, least recently used first out.

::

    <data_dir>/delivery-cache/<key>.dcm               one entry per (source, transfer syntax, bulk data or not)
    <data_dir>/delivery-cache/.partial-*.dcm          an entry being written (locked by its writer)
    <instances_dir>/<id>/delivery-cache/<key>.dcm     a hard link to an entry, handed out to that instance

Nothing but the filesystem is shared, so several gunicorn workers, servers and restarts may use one cache at
once:

* an entry is written to a temporary file that is renamed into place, so nobody sees half an entry; two
  processes making the same entry at once both succeed, the later rename wins and both copies are the same;
* the recency of an entry is its modification time, set again on every use (one ``utime``);
* a GetData answer never points into the cache itself: each instance gets a hard link to the entry in its own
  folder, so evicting an entry never takes away a file an application was told to read. The link lives as
  long as the instance (its work area drops it at the end); the bytes are freed when the last link goes;
* eviction runs after about 1/16 of the bound has been added by one GetData call, and when the call ends. It
  sums the entries, and removes the least recently used until the total is within the bound. One process
  evicts at a time (``flock`` on ``.lock``; the others skip the pass, as it is being done). A temporary file
  whose writer died (kill -9) is removed by the next pass: its writer's lock went with the process.

So the bound holds after every eviction pass; between passes, each busy worker may exceed it by at most 1/16
of it plus the object it is writing. Files handed out to live instances are not counted: they stay until their
instance ends, even when their entry was evicted.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from hosting_service.outputs.area import writer_alive

__all__ = ["DeliveryCache"]

_PARTIAL = ".partial-"
_EVICT_EVERY = 16
"""An eviction pass runs each time a call has added this fraction of the bound (1/16)."""


class DeliveryCache:
    """The shared cache as one GetData call of one instance uses it; :meth:`close` at the end of the call."""

    def __init__(self, root: Path, max_bytes: int, handout: Path):
        self.root = Path(root)
        self.max_bytes = max(0, max_bytes)
        self.handout = Path(handout)
        """The instance's folder for links to the entries handed out to it."""
        self._added = 0

    def close(self) -> None:
        """The call is over: an eviction pass if it added anything."""
        if self._added:
            self.evict()

    def handed_out(self, name: str) -> Optional[Path]:
        """The instance's link to entry ``name`` if it has one already, else ``None``."""
        path = self.handout / name
        return path if path.exists() else None

    def get(self, name: str) -> Optional[Path]:
        """Entry ``name`` handed out to the instance (and marked as just used), or ``None`` if there is none."""
        entry = self.root / name
        try:
            os.utime(entry)
            return self._link(entry, name)
        except FileNotFoundError:  # never made, or evicted meanwhile (even between the two calls above)
            return None

    def put(self, name: str, data: bytes) -> Path:
        """Add entry ``name`` with ``data`` and hand it out to the instance."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=_PARTIAL, suffix=".dcm")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # tells an eviction pass that this file is still being written
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # a crash of the machine must not leave a truncated entry under its name
                os.replace(temporary, self.root / name)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        handed = self._link(self.root / name, name)
        self._added += len(data)
        if self._added * _EVICT_EVERY > self.max_bytes:
            self.evict()
        return handed

    def evict(self) -> None:
        """Remove least recently used entries until the cache is within its bound (see the module docstring)."""
        self._added = 0
        try:
            lock = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # no cache yet
            return
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another process is evicting now
            entries, total = [], 0
            for item in os.scandir(self.root):
                if item.name.startswith(_PARTIAL):
                    if not writer_alive(Path(item.path)):
                        _unlink(item.path)
                elif item.name.endswith(".dcm"):
                    info = item.stat(follow_symlinks=False)
                    entries.append((info.st_mtime_ns, info.st_size, item.path))
                    total += info.st_size
            for _used, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                _unlink(path)
                total -= size
        finally:
            os.close(lock)

    def _link(self, entry: Path, name: str) -> Path:
        """A link to ``entry`` in the instance's folder; a copy where a link cannot be made (another filesystem,
        one without hard links, or the entry has as many links as its filesystem allows)."""
        self.handout.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.handout / name
        try:
            os.link(entry, target)
        except FileExistsError:  # another worker handed the same entry to this instance: the same bytes
            pass
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            fd, temporary = tempfile.mkstemp(dir=self.handout, prefix=_PARTIAL, suffix=".dcm")
            os.close(fd)
            shutil.copyfile(entry, temporary)
            os.replace(temporary, target)
        return target


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:  # removed by someone else meanwhile
        pass
