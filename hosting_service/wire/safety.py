"""Reading and parsing a SOAP request body without trusting it.

The body is read with a size limit (also when it arrives chunked, without ``Content-Length``) and parsed
by an lxml parser that never loads a DTD, never expands an entity and never touches the network. A
document with a DOCTYPE is refused outright (SOAP 1.1 §3: "A SOAP message MUST NOT contain a Document
Type Declaration"), which also disposes of XXE and entity-expansion bombs, and so is one nested deeper than
the configured limit. Should a DOCTYPE get past the scan anyway, every external reference resolves to
nothing (libxml2's ``no_network`` does not stop ``file:`` URLs) and the parsed document is refused. Every refusal is a :class:`~hosting_service.errors.ClientError` whose message says
what was wrong.
"""
from __future__ import annotations

import threading

from lxml import etree

from hosting_service.errors import ClientError

_CHUNK = 64 * 1024
_local = threading.local()


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, or :class:`ClientError` if it is larger than ``limit`` bytes.

    With ``Content-Length`` the declared size is checked before anything is read. Without it the body is
    read to its end only if the server says that is safe (``wsgi.input_terminated``, as gunicorn does for
    chunked requests), counting bytes as they come.
    """
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.strip():
        try:
            length = int(declared)
        except ValueError:
            raise ClientError(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise ClientError(f"the request body of {length} bytes exceeds the limit of {limit} bytes", http_status=413)
        return _read(stream, length, limit)
    if not environ.get("wsgi.input_terminated"):
        raise ClientError("the request has no Content-Length; send one (or use a server that supports chunked bodies)",
                          http_status=411)
    return _read(stream, None, limit)


def _read(stream, length: int | None, limit: int) -> bytes:
    chunks, total = [], 0
    while length is None or total < length:
        want = _CHUNK if length is None else min(_CHUNK, length - total)
        chunk = stream.read(want)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise ClientError(f"the request body exceeds the limit of {limit} bytes", http_status=413)
        chunks.append(chunk)
    return b"".join(chunks)


class _NothingExternal(etree.Resolver):
    """Every external reference (DTD, external or parameter entity, whatever its URL scheme) resolves to
    nothing: libxml2's own ``no_network`` does not cover ``file:`` URLs."""

    def resolve(self, url, pubid, context):
        return self.resolve_string("", context)


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers must not be shared between threads)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        parser.resolvers.add(_NothingExternal())
    return parser


_DOCTYPE_REFUSED = "the request contains a DOCTYPE declaration; SOAP messages must not have one (SOAP 1.1 §3)"


def parse(body: bytes, max_depth: int) -> etree._Element:
    """The document element of ``body``; :class:`ClientError` for anything but a plain, well-formed XML
    document without DOCTYPE and at most ``max_depth`` elements deep."""
    if not body.strip():
        raise ClientError("the request body is empty; a SOAP 1.1 envelope was expected")
    if _prolog_has_doctype(body):
        raise ClientError(_DOCTYPE_REFUSED)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise ClientError(f"the request is not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ClientError(_DOCTYPE_REFUSED)  # in an encoding the prolog scan does not read
    _check_depth(root, max_depth)
    return root


def _prolog_has_doctype(body: bytes) -> bool:
    """Whether a DOCTYPE comes before the document element, found by a linear scan so that libxml2
    never even reads the DTD (it would try its network loads, refused, and its entity accounting)."""
    text = _as_ascii_compatible(body)
    i = 3 if text.startswith(b"\xef\xbb\xbf") else 0
    while True:
        while i < len(text) and text[i] in b" \t\r\n":
            i += 1
        for start, end in ((b"<?", b"?>"), (b"<!--", b"-->")):
            if text.startswith(start, i):
                close = text.find(end, i + len(start))
                if close < 0:
                    return False
                i = close + len(end)
                break
        else:
            return text.startswith(b"<!DOCTYPE", i)


_UNSUPPORTED_SIGNATURES = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"<\x00\x00\x00", b"\x00\x00\x00<",
                           b"\x4c\x6f\xa7\x94")
"""UTF-32 (with and without BOM) and EBCDIC: encodings whose prolog the DOCTYPE scan cannot read."""


def _as_ascii_compatible(body: bytes) -> bytes:
    """The body with an ASCII-compatible prolog: UTF-16 (with or without BOM) re-encoded as UTF-8, others as
    they are. UTF-32 and EBCDIC are refused: SOAP peers send UTF-8 or UTF-16 (WS-I Basic Profile R1012)."""
    if body.startswith(_UNSUPPORTED_SIGNATURES):
        raise ClientError("the request must be encoded in UTF-8 or UTF-16 (WS-I Basic Profile R1012)")
    for signature, codec in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"), (b"<\x00", "utf-16-le"), (b"\x00<", "utf-16-be")):
        if body.startswith(signature):
            return body.decode(codec, errors="replace").encode("utf-8")
    return body


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise ClientError(f"the request nests elements deeper than the limit of {max_depth} levels")
        else:
            depth -= 1
