"""A job's folder on the data volume, and its results tar in and out.

``<data_dir>/jobs/<id>/`` holds ``inputs/`` (the uploaded inputs), or ``paths.json`` (a job given as paths on
the server's disk), and once a worker uploaded them ``results/`` (``manifest.json``, ``app.log``, the outputs)
with ``results-index.json`` beside it: each results file's size and SHA-256 as the worker declared and the
server verified, so a download carries the same ``DICOMHOST.sha256`` PAX headers without reading every file
twice. A new upload replaces the results whole (renamed into place; the old ones removed after).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

from hosting_service.jobs.uploads import BLOCK, SHA256_KEY, Received

log = logging.getLogger("dicom_host.jobs")

RESULTS = "results"
INDEX = "results-index.json"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 8 << 20
_PIECE = 1 << 20


class JobFolder:
    """Where one job's files are."""

    def __init__(self, jobs_dir: Path, job_id: str):
        self.path = jobs_dir / job_id

    @property
    def inputs(self) -> Path:
        return self.path / "inputs"

    @property
    def paths_file(self) -> Path:
        return self.path / "paths.json"

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    def server_paths(self) -> Optional[list[str]]:
        """The paths on the server's disk the job was submitted with; ``None`` for uploaded inputs."""
        try:
            return json.loads(self.paths_file.read_text())
        except FileNotFoundError:
            return None

    def store_results(self, staged: Path, received: Received) -> None:
        """Put the verified upload in ``staged`` in place of any earlier results."""
        old = self.path / f".old-results-{uuid.uuid4().hex}"
        index = self.path / f".{INDEX}-{uuid.uuid4().hex}"
        index.write_text(json.dumps({n: {"size": s, "sha256": h} for n, (s, h) in received.files.items()}))
        if self.results.exists():
            os.rename(self.results, old)
        os.rename(staged, self.results)
        os.rename(index, self.path / INDEX)
        shutil.rmtree(old, ignore_errors=True)

    def discard_results(self) -> None:
        """Forget an attempt's results (the job was queued again)."""
        (self.path / INDEX).unlink(missing_ok=True)
        shutil.rmtree(self.results, ignore_errors=True)

    def manifest(self) -> Optional[Any]:
        """``results/manifest.json`` parsed; ``None`` when there is none (or it is not readable JSON)."""
        path = self.results / MANIFEST
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                return None
            return json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None

    def results_tar(self) -> Optional[tuple[int, Iterator[bytes]]]:
        """The results as a PAX tar stream: its exact length and its pieces; ``None`` when there are none."""
        try:
            index = json.loads((self.path / INDEX).read_text())
        except (OSError, ValueError):
            return None
        members = []
        now = int(time.time())
        for name in sorted(index):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = index[name]["size"], 0o644, now
            info.pax_headers = {SHA256_KEY: index[name]["sha256"]}
            members.append((name, info.size, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")))
        length = sum(len(header) + _padded(size) for _, size, header in members) + 2 * BLOCK
        return length, self._stream(members)

    def _stream(self, members: list[tuple[str, int, bytes]]) -> Iterator[bytes]:
        for name, size, header in members:
            yield header
            left = size
            try:
                with open(self.results / name, "rb") as f:
                    while left and (piece := f.read(min(left, _PIECE))):
                        left -= len(piece)
                        yield piece
            except OSError as exc:
                log.error("job results %s: %s cannot be read: %s", self.path.name, name, exc)
            if left:  # the file changed under us: keep the announced length, the checksum tells the client
                log.error("job results %s: %s is shorter than recorded", self.path.name, name)
                while left:
                    yield bytes(min(left, _PIECE))
                    left -= min(left, _PIECE)
            yield bytes(_padded(size) - size)
        yield bytes(2 * BLOCK)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
