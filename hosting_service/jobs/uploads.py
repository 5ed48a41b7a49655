"""Receiving a tar stream (a job's inputs, a job's results) straight to disk, within bounds.

The tar is read as it arrives, never held in memory: a member's bytes go from the request body to its file
in pieces of :data:`PIECE`, hashed on the way, and the SHA-256 is compared with the member's PAX header
``DICOMHOST.sha256`` (which every member must carry) once its last byte is in. The reader is a small POSIX
(ustar + PAX) parser of its own rather than :mod:`tarfile`: tarfile reads a PAX header of any announced
size into memory and follows link members, where a peer must get neither.

Bounds and rules (a breach is a :class:`~hosting_service.errors.ClientError` naming the member):

* the whole stream: the caller's limit (``DICOM_HOST_JOB_MAX_UPLOAD``; over it: 413);
* at most :data:`MAX_MEMBERS` members; a PAX header (and a job's ``job.json``) at most :data:`MAX_HEADER_BYTES`;
* names: relative, no ``..`` or ``.`` segments, no empty segments, no ``\\``, NUL or control characters, a
  segment at most 255 bytes, the whole at most :data:`MAX_PATH` bytes; each name once;
* regular files and folders only: links, devices and FIFOs are refused;
* the stream must end with the end-of-archive block: a body cut short is refused, not taken as complete.

The files land in a staging folder (:func:`staging`) that is removed on any failure, so a refused upload
leaves nothing behind; the caller renames the folder into place once everything is accepted.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from hosting_service.errors import ClientError
from hosting_service.outputs.body import BodyStalled, BrokenBody, ReadInto

BLOCK = 512
PIECE = 1 << 20
MAX_MEMBERS = 100_000
MAX_HEADER_BYTES = 64 << 10
MAX_PATH = 4096
MAX_SEGMENT_BYTES = 255
SHA256_KEY = "DICOMHOST.sha256"
TAR_CONTENT_TYPE = "application/x-tar"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_TYPES = (b"0", b"\0", b"7")
_DIR_TYPE = b"5"
_TYPE_NAMES = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
               b"6": "a FIFO", b"L": "a GNU long name", b"K": "a GNU long link name", b"S": "a sparse file"}


class UploadTooLarge(ClientError):
    http_status = 413


def declared_length(environ: dict, limit: int) -> Optional[int]:
    """The body's ``Content-Length`` (``None`` when chunked); 413 at once when it is over ``limit``."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = environ.get("CONTENT_LENGTH", "").strip()
    if not raw.isdigit():
        raise ClientError("a tar upload needs a Content-Length (or chunked transfer encoding)", http_status=411)
    if int(raw) > limit:
        raise UploadTooLarge(f"the upload of {int(raw)} bytes exceeds this server's limit of {limit} bytes "
                             "(DICOM_HOST_JOB_MAX_UPLOAD)")
    return int(raw)


STAGING_PREFIX = ".incoming-"
STALE_AFTER = 3600.0
"""A staging folder none of whose files changed for this long belongs to a server that died mid-upload (a live
upload writes all the time, and one that pauses for ``DICOM_HOST_READ_TIMEOUT`` is given up)."""


def sweep_stale(parent: Path, now: float) -> list[Path]:
    """Remove the staging folders under ``parent`` (and one level below: results of a job) left by a
    server that was killed mid-upload; the folders removed."""
    removed = []
    for folder in [*parent.glob(STAGING_PREFIX + "*"), *parent.glob("*/" + STAGING_PREFIX + "*")]:
        try:
            newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        except OSError:
            continue  # removed meanwhile
        if now - newest > STALE_AFTER:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def staging(parent: Path) -> Iterator[Path]:
    """A fresh private folder under ``parent`` for an upload in progress, removed if the block fails (the
    caller renames it away on success)."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = parent / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@dataclass
class Received:
    """What a tar stream delivered: each stored file's name, size and SHA-256."""

    files: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values())


def receive_tar(readinto: ReadInto, *, limit: int, into: Path, under: Optional[str] = None,
                first: Optional[tuple[str, Callable[[bytes], None]]] = None) -> Received:
    """Store the tar stream's files in ``into``.

    ``under``: every member must be inside this top folder (``"inputs"``). ``first``: ``(name, check)``: the
    first member must be the file ``name`` (at most :data:`MAX_HEADER_BYTES`); its bytes go to ``check``,
    which raises to refuse the upload, and are not stored."""
    reader = _TarReader(readinto, limit)
    received = Received()
    for number, member in enumerate(reader.members()):
        if number == 0 and first is not None:
            if member.name != first[0] or member.is_dir:
                raise ClientError(f"the tar's first member must be {first[0]}, got {member.name!r}")
            first[1](reader.read_small(member))
            continue
        if under is not None and not (member.name.startswith(under + "/") or member.is_dir and member.name == under):
            raise ClientError(f"member {member.name!r}: every member must be inside {under}/")
        target = into / member.name
        if member.is_dir:
            _make_dirs(target, member.name)
            continue
        if member.sha256 is None:
            raise ClientError(f"member {member.name!r} has no {SHA256_KEY} PAX header (the SHA-256 of its bytes)")
        _make_dirs(target.parent, member.name)
        reader.store(member, target)
        received.files[member.name] = (member.size, member.sha256)
    if first is not None and reader.count == 0:
        raise ClientError(f"the tar stream is empty: its first member must be {first[0]}")
    return received


def _make_dirs(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError):
        raise ClientError(f"member {name!r}: a file of that name (or of a folder above it) came before") from None


@dataclass
class _Member:
    name: str
    size: int
    sha256: Optional[str]
    is_dir: bool


class _TarReader:
    """Sequential reader of a ustar/PAX stream from a body's ``readinto`` (see the module docstring)."""

    def __init__(self, readinto: ReadInto, limit: int):
        self._readinto = readinto
        self.limit = limit
        self.consumed = 0
        self.count = 0
        self._unread = 0
        """Bytes of the current member (with padding) not consumed yet."""
        self._buffer = bytearray(PIECE)

    # --- bytes from the body ------------------------------------------------------------------------

    def _fill(self, view: memoryview, what: str) -> int:
        """Fill ``view`` from the body; the bytes stored (fewer only at the end of the body)."""
        if self.consumed + len(view) > self.limit:
            raise UploadTooLarge(f"the upload exceeds this server's limit of {self.limit} bytes "
                                 "(DICOM_HOST_JOB_MAX_UPLOAD); nothing was kept")
        n = 0
        while n < len(view):
            try:
                got = self._readinto(view[n:])
            except (BodyStalled, BrokenBody, OSError) as exc:
                raise ClientError(f"the upload broke off in {what} after {self.consumed + n} bytes: {exc}") from None
            if not got:
                break
            n += got
        self.consumed += n
        return n

    def _exact(self, size: int, what: str) -> bytes:
        data = bytearray(size)
        if self._fill(memoryview(data), what) < size:
            raise ClientError(f"the tar stream ends in {what}: the upload was cut short")
        return bytes(data)

    def _skip(self, size: int, what: str) -> None:
        while size:
            n = min(size, len(self._buffer))
            if self._fill(memoryview(self._buffer)[:n], what) < n:
                raise ClientError(f"the tar stream ends in {what}: the upload was cut short")
            size -= n

    # --- members ------------------------------------------------------------------------------------

    def members(self) -> Iterator[_Member]:
        pax: dict[str, str] = {}
        while True:
            if self._unread:  # the caller skipped a member's bytes (a folder has none)
                self._skip(self._unread, "a member")
                self._unread = 0
            header = self._exact(BLOCK, "a member header")
            if header == bytes(BLOCK):
                return  # end of archive (a second zero block may follow; nothing after it is read)
            _check_sum(header)
            kind = header[156:157]
            size = _number(header[124:136])
            if kind in (b"x", b"g"):
                if size > MAX_HEADER_BYTES:
                    raise ClientError(f"a PAX header of {size} bytes exceeds {MAX_HEADER_BYTES}")
                records = _parse_pax(self._exact(_padded(size), "a PAX header")[:size])
                if kind == b"x":  # a global header ('g', e.g. git archive's comment) changes nothing we use
                    pax = records
                continue
            name = pax.get("path") or _ustar_name(header)
            if kind not in _FILE_TYPES and kind != _DIR_TYPE:
                raise ClientError(f"member {name[:200]!r} is {_TYPE_NAMES.get(kind, f'of type {kind!r}')}: only "
                                  "regular files and folders are accepted")
            if "size" in pax:
                if not pax["size"].isdigit():
                    raise ClientError(f"member {name[:200]!r}: bad PAX size {pax['size'][:40]!r}")
                size = int(pax["size"])
            is_dir = kind == _DIR_TYPE
            name = safe_name(name.rstrip("/") if is_dir else name)
            sha256 = pax.get(SHA256_KEY)
            if sha256 is not None:
                sha256 = sha256.strip().lower()
                if not _SHA256.fullmatch(sha256):
                    raise ClientError(f"member {name!r}: {SHA256_KEY} must be 64 hex digits")
            self.count += 1
            if self.count > MAX_MEMBERS:
                raise UploadTooLarge(f"the tar holds more than {MAX_MEMBERS} members")
            pax = {}
            self._unread = 0 if is_dir else _padded(size)
            yield _Member(name, 0 if is_dir else size, sha256, is_dir)

    def read_small(self, member: _Member) -> bytes:
        if member.size > MAX_HEADER_BYTES:
            raise ClientError(f"{member.name} is {member.size} bytes; at most {MAX_HEADER_BYTES} are accepted")
        data = self._exact(_padded(member.size), member.name)[: member.size]
        self._unread = 0
        return data

    def store(self, member: _Member, target: Path) -> None:
        """Copy the member's bytes into a new file ``target``, checking its SHA-256."""
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            raise ClientError(f"member {member.name!r} appears twice") from None
        except IsADirectoryError:
            raise ClientError(f"member {member.name!r}: a folder of that name came before") from None
        sha = hashlib.sha256()
        left = member.size
        try:
            with open(fd, "wb", buffering=0) as f:
                while left:
                    n = min(left, len(self._buffer))
                    view = memoryview(self._buffer)[:n]
                    if self._fill(view, f"member {member.name!r}") < n:
                        raise ClientError(f"the tar stream ends in member {member.name!r}: the upload was cut short")
                    sha.update(view)
                    while view:
                        view = view[f.write(view):]
                    left -= n
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ClientError("the server's disk is full; nothing was kept", http_status=507) from None
            raise
        self._skip(_padded(member.size) - member.size, f"member {member.name!r}")
        self._unread = 0
        if sha.hexdigest() != member.sha256:
            raise ClientError(f"member {member.name!r}: SHA-256 mismatch (declared {member.sha256}, received "
                              f"{sha.hexdigest()}); nothing was kept")


def safe_name(name: str) -> str:
    """A member name as a safe relative path (a leading ``./`` dropped); :class:`ClientError` otherwise."""
    shown = name[:200]
    if name.startswith("./"):
        name = name[2:]
    if not name or name.startswith("/"):
        raise ClientError(f"member {shown!r}: names must be relative paths")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise ClientError(f"member {shown!r}...: a name is at most {MAX_PATH} bytes")
    if "\\" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ClientError(f"member {shown!r}: no backslash, NUL or control characters in names")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise ClientError(f"member {shown!r}: no empty, '.' or '..' segments in names")
        if len(segment.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
            raise ClientError(f"member {shown!r}: a name segment is at most {MAX_SEGMENT_BYTES} bytes")
    return name


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _number(field_bytes: bytes) -> int:
    """A numeric header field: octal text, or base-256 (high bit set) for large sizes."""
    if field_bytes[:1] and field_bytes[0] & 0x80:
        if field_bytes[0] != 0x80:  # negative (0xff) or malformed
            raise ClientError("a tar header holds a negative number")
        return int.from_bytes(field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ClientError("not a tar stream (a header field is not an octal number)") from None


def _check_sum(header: bytes) -> None:
    stored = _number(header[148:156])
    computed = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
    if stored != computed:
        raise ClientError("not a tar stream (a header's checksum does not match)")


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX ustar (GNU's "ustar  " uses that area for other things)
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, str]:
    """PAX records ``"%d %s=%s\\n"`` (length includes itself) into a dict; malformed: a ClientError."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 20)
        if space < 0 or not data[pos:space].isdigit():
            raise ClientError("malformed PAX header")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise ClientError("malformed PAX header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise ClientError("malformed PAX header")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records
