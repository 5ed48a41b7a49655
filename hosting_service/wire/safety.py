"""Parsing a SOAP request without trusting it: an lxml parser that never loads a DTD, never expands an
entity, never touches the network, and stops as soon as the document is too large.

A document with a DOCTYPE is refused outright (SOAP 1.1 §3: "A SOAP message MUST NOT contain a Document
Type Declaration"), which also disposes of XXE and entity-expansion bombs. The DOCTYPE is found by a scan
of the prolog before libxml2 sees the document, so the scan must be able to read the prolog: the body must
be UTF-8, UTF-16, or declare an ASCII-compatible single-byte encoding (US-ASCII, ISO-8859-n, windows-125n);
UTF-7, UTF-32, EBCDIC and every other declared encoding are refused. Should a DOCTYPE get past the scan
anyway, every external reference resolves to nothing (libxml2's ``no_network`` does not stop ``file:``
URLs) and the parsed document is refused.

The document is fed to the parser in chunks and its elements are counted, and their nesting measured, as
the parser reports them: a document with more elements or deeper nesting than the limits is refused
before the rest of it is parsed. Every refusal is a :class:`~hosting_service.errors.ClientError` whose
message says what was wrong.
"""
from __future__ import annotations

import functools
import re
import threading

from lxml import etree

from hosting_service.errors import ClientError

_CHUNK = 64 * 1024
_local = threading.local()


class _NothingExternal(etree.Resolver):
    """Every external reference (DTD, external or parameter entity, whatever its URL scheme) resolves to
    nothing: libxml2's own ``no_network`` does not cover ``file:`` URLs."""

    def resolve(self, url, pubid, context):
        return self.resolve_string("", context)


def _parser() -> etree.XMLPullParser:
    """This thread's parser (lxml parsers must not be shared between threads), reused from one request to
    the next; :func:`parse` drops it when a document did not parse to its end."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = new_parser()
    return parser


def new_parser() -> etree.XMLPullParser:
    """A parser that loads no DTD, expands no entity, reads nothing external, and reports each element's
    start and end."""
    parser = etree.XMLPullParser(
        events=("start", "end"),
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


def parse(body: bytes, *, max_depth: int, max_elements: int) -> etree._Element:
    """The document element of ``body``; :class:`ClientError` for anything but a plain, well-formed XML
    document in a readable encoding, without DOCTYPE, with at most ``max_elements`` elements nested at
    most ``max_depth`` deep."""
    if not body or body.isspace():
        raise ClientError("the request body is empty; a SOAP 1.1 envelope was expected")
    prolog = _as_ascii_compatible(body)
    _check_declared_encoding(prolog)
    if _prolog_has_doctype(prolog):
        raise ClientError(_DOCTYPE_REFUSED)
    parser = _parser()
    try:
        root = _Limits(max_depth, max_elements).parse(parser, body)
    except BaseException:
        _local.parser = None  # stopped mid-document: its state is not reusable
        raise
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ClientError(_DOCTYPE_REFUSED)  # in case one got past the scan
    return root


class _Limits:
    """Counts the elements of one document, and measures their nesting, as the parser reports them."""

    def __init__(self, max_depth: int, max_elements: int):
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.depth = 0
        self.elements = 0

    def parse(self, parser: etree.XMLPullParser, body: bytes) -> etree._Element:
        try:
            for start in range(0, len(body), _CHUNK):
                parser.feed(body[start : start + _CHUNK])
                self._count(parser)
            root = parser.close()
        except etree.XMLSyntaxError as exc:
            raise ClientError(f"the request is not well-formed XML: {exc}") from None
        self._count(parser)  # libxml2 holds back the document's last bytes until close()
        return root

    def _count(self, parser: etree.XMLPullParser) -> None:
        for event, _ in parser.read_events():
            if event == "end":
                self.depth -= 1
                continue
            self.depth += 1
            self.elements += 1
            if self.depth > self.max_depth:
                raise ClientError(f"the request nests elements deeper than the limit of {self.max_depth} levels")
            if self.elements > self.max_elements:
                raise ClientError(f"the request has more than {self.max_elements} XML elements, the limit")


def _prolog_has_doctype(text: bytes) -> bool:
    """Whether a DOCTYPE comes before the document element of ``text`` (ASCII-compatible), found by a
    linear scan so that libxml2 never even reads the DTD (it would try its network loads, refused, and its
    entity accounting)."""
    i = 3 if text.startswith(_UTF8_BOM) else 0
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


_UTF8_BOM = b"\xef\xbb\xbf"
_UNREADABLE = "the request must be encoded in UTF-8 or UTF-16 (WS-I Basic Profile R1012)"
_UNSUPPORTED_SIGNATURES = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"<\x00\x00\x00", b"\x00\x00\x00<",
                           b"\x4c\x6f\xa7\x94")
"""UTF-32 (with and without BOM) and EBCDIC: encodings whose prolog the DOCTYPE scan cannot read."""


def _as_ascii_compatible(body: bytes) -> bytes:
    """The body with an ASCII-compatible prolog: UTF-16 (with or without BOM) re-encoded as UTF-8, others as
    they are. UTF-32 and EBCDIC are refused: SOAP peers send UTF-8 or UTF-16 (WS-I Basic Profile R1012)."""
    if body.startswith(_UNSUPPORTED_SIGNATURES):
        raise ClientError(_UNREADABLE)
    for signature, codec in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"), (b"<\x00", "utf-16-le"), (b"\x00<", "utf-16-be")):
        if body.startswith(signature):
            return body.decode(codec, errors="replace").encode("utf-8")
    return body


_DECLARATION = re.compile(rb"<\?xml[ \t\r\n](.*?)\?>", re.DOTALL)
_ENCODING = re.compile(rb"encoding[ \t\r\n]*=[ \t\r\n]*(?:\"([^\"]*)\"|'([^']*)')")
_READABLE_ENCODINGS = re.compile(
    r"utf8|utf16(le|be)?|(us)?ascii|iso646us|latin1|iso8859(1[0-6]|[1-9])|(windows|cp)125[0-8]"
)
"""Declared encodings (lower case, without ``-``, ``_``, ``.``) in which the prolog reads as ASCII, so the
DOCTYPE scan works (or, for UTF-16, is done on the decoded text)."""


def _check_declared_encoding(text: bytes) -> None:
    """Refuse a document whose XML declaration names an encoding the DOCTYPE scan cannot read (``UTF-7``
    hides ``<!DOCTYPE`` as ``+ADw-!DOCTYPE``)."""
    declaration = _DECLARATION.match(text, 3 if text.startswith(_UTF8_BOM) else 0)
    if declaration is None or b"encoding" not in declaration[1]:
        return
    found = _ENCODING.search(declaration[1])
    if found is None:
        raise ClientError(f"the request's XML declaration has an unreadable encoding: {_show(declaration[0])}")
    name = (found[1] if found[1] is not None else found[2]).decode("ascii", errors="replace")
    if not _is_readable(name):
        raise ClientError(f"the request declares the encoding {name[:40]!r}; {_UNREADABLE}")


@functools.lru_cache(maxsize=64)
def _is_readable(encoding: str) -> bool:
    return _READABLE_ENCODINGS.fullmatch(re.sub(r"[-_.]", "", encoding.lower())) is not None


def _show(raw: bytes) -> str:
    return repr(raw[:80].decode("ascii", errors="replace"))
