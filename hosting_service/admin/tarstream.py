"""The tar streams of the job API, on the client side: writing one (a job's inputs, a job's results) and
reading one into a folder (a job's results).

A stream is POSIX.1-2001 (PAX) tar. Every regular-file member carries its SHA-256 in the PAX header
``DICOMHOST.sha256`` (hex), which the receiver checks while it writes the member to disk. A member's digest
must be in its header, which comes before its bytes, so every file is read twice: once to hash it, when
the stream is planned (:func:`plan`), and once to send it (:meth:`TarPlan.chunks`). Nothing is held in
memory beyond one chunk, and the exact length of the stream is known before the first byte is sent
(``Content-Length``: a server refuses an oversized upload from its head, before any body is sent).
A file that changes between the two reads ends the stream with :class:`TarSourceChanged`.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Iterator, Optional

SHA256_HEADER = "DICOMHOST.sha256"
"""The PAX header that holds a member's SHA-256 (hex)."""
CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_END = b"\0" * (2 * _BLOCK)


class TarSourceChanged(Exception):
    """A file changed between the moment it was hashed and the moment it was sent."""


class UnsafeMember(Exception):
    """A member of a received stream that cannot be written safely (its message names it)."""


@dataclass
class Member:
    info: tarfile.TarInfo
    source: Optional[Path]
    """The file the bytes come from; ``None``: :attr:`data`."""
    data: bytes = b""

    def header(self) -> bytes:
        return self.info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> int:
    return -size % _BLOCK


def sha256_of(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _info(name: str, size: int, sha256: str, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.pax_headers = {SHA256_HEADER: sha256}
    return info


class TarPlan:
    """The members of a stream to be sent, with their digests: its exact length, then its bytes."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        self.files = 0
        self.file_bytes = 0
        self._names: set[str] = set()

    def add_bytes(self, name: str, data: bytes) -> None:
        self._add(Member(_info(name, len(data), hashlib.sha256(data).hexdigest(), 0), None, data))

    def add_file(self, name: str, path: Path) -> None:
        mtime = path.stat().st_mtime
        size, digest = sha256_of(path)
        self._add(Member(_info(name, size, digest, mtime), path))
        self.files += 1
        self.file_bytes += size

    def _add(self, member: Member) -> None:
        if member.info.name in self._names:
            raise ValueError(f"two members named {member.info.name}")
        self._names.add(member.info.name)
        self.members.append(member)

    @property
    def length(self) -> int:
        """The exact number of bytes :meth:`chunks` yields."""
        return sum(len(m.header()) + m.info.size + _padding(m.info.size) for m in self.members) + len(_END)

    def chunks(self) -> Iterator[bytes]:
        """The stream, a chunk at a time; each file is read again and checked against its size and digest."""
        for member in self.members:
            yield member.header()
            if member.source is None:
                yield member.data
            else:
                yield from _checked_file(member)
            if pad := _padding(member.info.size):
                yield b"\0" * pad
        yield _END


def _checked_file(member: Member) -> Iterator[bytes]:
    expected = member.info.pax_headers[SHA256_HEADER]
    digest = hashlib.sha256()
    left = member.info.size
    assert member.source is not None
    try:
        with open(member.source, "rb") as f:
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                digest.update(chunk)
                yield chunk
            changed = bool(left or f.read(1)) or digest.hexdigest() != expected
    except OSError as exc:  # not a transport error: the file went away or became unreadable
        raise TarSourceChanged(f"{member.source}: {exc.strerror or exc}") from None
    if changed:
        raise TarSourceChanged(f"{member.source} changed while it was being sent")


def folder_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX name, path)`` of every regular file under ``root``, sorted; symbolic links to files
    are read, links to folders are not followed (no loops)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    continue
            except OSError:
                continue
            yield path.relative_to(root).as_posix(), path


def input_names(paths: Iterable[Path]) -> Iterator[tuple[str, Path]]:
    """Member names ``inputs/<name>`` for the files and folders given to ``submit --input``: each keeps its
    own name (a folder: its name, then the paths inside it); a name given twice gets ``-2``, ``-3``..."""
    taken: set[str] = set()
    for path in paths:
        base = path.resolve().name or "input"
        name, n = base, 1
        while name in taken:
            n += 1
            stem, dot, ext = base.partition(".") if path.is_file() else (base, "", "")
            name = f"{stem}-{n}{dot}{ext}"
        taken.add(name)
        if path.is_dir():
            for relative, file in folder_files(path):
                yield f"inputs/{name}/{relative}", file
        else:
            yield f"inputs/{name}", path


# --- reading ------------------------------------------------------------------------------------------

def safe_name(name: str) -> PurePosixPath:
    """A member name as a relative path that stays inside the folder it is extracted to."""
    path = PurePosixPath(name)
    if not name or "\\" in name or "\0" in name or path.is_absolute() or not path.parts or ".." in path.parts:
        raise UnsafeMember(f"unsafe member name {name!r}")
    return path


def extract(stream: IO[bytes], folder: Path, *, max_members: int = 100_000) -> list[str]:
    """Write the regular files of a tar stream into ``folder`` (which exists); returns their names.

    Only regular files and folders are written (links, devices and the like are refused, as is a name that
    would leave ``folder``); a member whose ``DICOMHOST.sha256`` header does not match its bytes is
    refused. Each file is written to ``<name>.part`` and renamed once complete."""
    names: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                relative = safe_name(info.name)
                target = folder.joinpath(*relative.parts)
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not info.isreg():
                    raise UnsafeMember(f"member {info.name!r} is not a regular file")
                if len(names) >= max_members:
                    raise UnsafeMember(f"more than {max_members} members")
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_member(archive, info, target)
                names.append(relative.as_posix())
    except tarfile.TarError as exc:
        raise UnsafeMember(f"not a readable tar stream: {exc}") from None
    return names


def _write_member(archive: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> None:
    source = archive.extractfile(info)
    assert source is not None
    expected = info.pax_headers.get(SHA256_HEADER)
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if expected is not None and digest.hexdigest() != expected.lower():
            raise UnsafeMember(f"member {info.name!r}: its bytes do not match its {SHA256_HEADER}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
