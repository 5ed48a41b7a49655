"""The ``--output`` folder of a run: new, empty, or holding an earlier run's results.

* A new folder is created (with its parents); an empty one is used as it is.
* A folder that an earlier ``dicom-host run`` wrote (it holds that run's ``manifest.json``) is replaced,
  so the same command can be run again: the new run writes into a fresh sibling folder
  ``<output>.run-<time>``, and only when it completes does that folder take the place of the old one
  (rename the old aside, rename the new in, remove the old). When the new run fails, the earlier results
  stay where they were and the failed run's ``manifest.json`` and ``app.log`` stay in ``<output>.run-<time>``.
* Anything else (a file, a folder holding other things) is refused: dicom-host never deletes what it did
  not write.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

from hosting_service.orchestration.manifest import FORMAT, MANIFEST_NAME


class DestinationError(Exception):
    """``--output`` cannot be used; the message says why."""


def _written_by_dicom_host(folder: Path) -> bool:
    try:
        with open(folder / MANIFEST_NAME, encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _kind(path: Path) -> str:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a folder"


class Destination:
    def __init__(self, final: Path, folder: Path, *, created: bool):
        self.final = final
        """The folder the user named."""
        self.folder = folder
        """Where this run writes: ``final`` itself, or the sibling that replaces it once the run completed."""
        self.created = created
        """Whether this run created :attr:`folder` (and may remove it while it is empty)."""

    @property
    def replacing(self) -> bool:
        return self.folder != self.final

    @classmethod
    def prepare(cls, path: Path) -> "Destination":
        """The folder this run writes to; :class:`DestinationError` when ``path`` cannot be used."""
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise DestinationError(f"--output {path} is {_kind(path)}; give a folder (new, empty, or one an "
                                   "earlier dicom-host run wrote)")
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                raise DestinationError(f"--output {path}: cannot write in this folder (permission denied)")
            if not any(path.iterdir()):
                return cls(path, path, created=False)
            if not _written_by_dicom_host(path):
                raise DestinationError(f"--output {path} is not empty and holds no results of an earlier "
                                       "dicom-host run; give a new or empty folder")
            folder = path.with_name(f"{path.name}.run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        else:
            folder = path
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise DestinationError(f"cannot create --output {folder}: {exc.strerror or exc}") from None
        return cls(path, folder, created=True)

    def complete(self) -> None:
        """The run completed: its folder takes the place of the earlier results (:attr:`folder` is then
        :attr:`final`); :class:`DestinationError` if that cannot be done (the results stay in :attr:`folder`)."""
        if not self.replacing:
            return
        aside = self.final.with_name(f".{self.final.name}.replaced-{os.getpid()}")
        try:
            os.rename(self.final, aside)
        except OSError as exc:
            raise DestinationError(f"the earlier results in {self.final} could not be moved aside "
                                   f"({exc.strerror or exc}); the new ones are in {self.folder}") from None
        os.rename(self.folder, self.final)  # the name is free and in the same folder: cannot fail but for EIO
        shutil.rmtree(aside, ignore_errors=True)
        self.folder = self.final

    def abandon(self) -> None:
        """The run ended before writing anything: remove the folder it created for nothing."""
        if self.created:
            try:
                self.folder.rmdir()  # only while empty
            except OSError:
                pass
