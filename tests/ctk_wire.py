"""CTK's SOAP messages: as recorded from a real CTK build, and written anew exactly as CTK writes them.

``tests/data/ctk/`` holds transcripts of CTK ``60a0740f`` (QtSoap, Qt 5.15) talking to dicom-host (see its
README.md). Each message's head is shown as sent, a literal ``\\r`` marking a CRLF line end (the lines
without one end in a bare ``\\n``: CTK's server), and its XML body re-indented by the decoder.
:func:`ctk_bytes` gives back the bytes CTK sent: QtSoap writes ``QDomDocument::toString(0)``, one element a
line, no indentation, a final newline; a leaf value whose text is empty is written ``<a ...></a>``, and only
a struct or array without members ``<a .../>``. The recorded Content-Length of every CTK message checks the
reconstruction (``test_ctk_replay.py``).

:func:`envelope` and its parts write new messages in that same form, for the scripted CTK application
(``tests/ctk_app.py``); they reproduce the recorded messages byte for byte (tested). One thing varies from
one CTK process to the next: QDom writes an element's attributes in the order of a hash that Qt seeds per
process, so ``xmlns:xsi`` comes before ``xsi:type`` in the transcripts and after it in
``app-get-data-answer.http`` (the exact bytes of a later CTK process, from its log). The writer uses the
transcripts' order; against other CTK output it is compared attribute order aside (canonical XML).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

DATA = Path(__file__).resolve().parent / "data" / "ctk"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
APP_SERVICE_NS = "http://dicom.nema.org/PS3.19/ApplicationService-20100825"

ENVELOPE_OPEN = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:xsd="http://www.w3.org/1999/XMLSchema" '
                 'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">')
BODY_ATTRIBUTES = f'xmlns:SOAP-ENV="{SOAP_ENV}"'
XSI = 'xmlns:xsi="http://www.w3.org/1999/XMLSchema-instance"'
ARRAY_ATTRIBUTES = ('xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" {xsi} SOAP-ENC:arrayType="{kind}" '
                    'xsi:type="xsd:Array"')
ITEM_ATTRIBUTES = f'xmlns:SOAP-ENV="{SOAP_ENV}" SOAP-ENV:position="[{{index}}]"'

_EMPTY_LEAF = re.compile(r'^<([A-Za-z_][\w.-]*) ([^>]*xsi:type="xsd:(?!Array")[^"]*"[^>]*)/>$')


# --- the recorded transcripts ----------------------------------------------------------------------------

@dataclass
class Message:
    time: float
    source: int
    target: int
    head: list[tuple[str, bool]]
    """The head's lines, each with whether it ended in CRLF."""
    body: str
    """The XML body as the transcript shows it (re-indented)."""

    @property
    def start_line(self) -> str:
        return self.head[0][0]

    @property
    def headers(self) -> dict[str, str]:
        return {name.strip().lower(): value.strip() for name, _, value in
                (line.partition(":") for line, _ in self.head[1:])}

    @property
    def from_ctk(self) -> bool:
        """Written by CTK: its server's answers (bare ``\\n`` line ends) or its client's requests."""
        return not any(crlf for _, crlf in self.head) or self.headers.get("user-agent") == "Mozilla/5.0"

    @property
    def operation(self) -> str:
        """The SOAPAction's operation of a request; for an answer, its body's first element."""
        action = self.headers.get("soapaction")
        if action:
            return action.strip('"').rpartition("/")[2]
        match = re.search(r"<(?:\w+:)?(\w+)Response[ >/]", self.body)
        return match.group(1) if match else ""

    def wire_bytes(self) -> bytes:
        """The whole HTTP message as CTK sent it (only for :attr:`from_ctk` messages)."""
        head = b"".join(line.encode() + (b"\r\n" if crlf else b"\n") for line, crlf in self.head)
        return head + (b"\r\n" if self.head[-1][1] else b"\n") + ctk_bytes(self.body)


def transcript(name: str) -> list[Message]:
    """The messages of ``tests/data/ctk/<name>``, in order."""
    messages = []
    for block in (DATA / name).read_text(encoding="utf-8").split("===== t=")[1:]:
        header_line, _, rest = block.partition("\n")
        time, source, _, target = header_line.split()[:4]
        head_text, _, body = rest.partition("\n-----\n")
        head = [(line[:-2], True) if line.endswith("\\r") else (line, False) for line in head_text.split("\n")]
        head[-1] = (head[-1][0], head[0][1])  # the decoder cut the last line's end: it is like the others
        messages.append(Message(float(time), int(source), int(target), head, body.rstrip("\n")))
    return messages


def ctk_bytes(body: str) -> bytes:
    """The bytes QtSoap wrote for a re-indented body of a CTK message (see the module docstring)."""
    lines = []
    for line in body.split("\n"):
        line = line.lstrip(" ")
        empty = _EMPTY_LEAF.match(line)
        lines.append(f"<{empty[1]} {empty[2]}></{empty[1]}>" if empty else line)
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- writing messages as QtSoap does -----------------------------------------------------------------------

Lines = list[str]


def value(name: str, text: str, xsd: str = "string") -> Lines:
    """A leaf (QtSoapSimpleType): its XSD type in an ``xsi:type`` of the 1999 schema namespace."""
    return [f'<{name} {XSI} xsi:type="xsd:{xsd}">{escape(text)}</{name}>']


def struct(name: str, *members: Lines, attributes: str = "") -> Lines:
    """A struct (QtSoapStruct): members one a line; none: ``<name/>``."""
    opening = f"<{name}{' ' + attributes if attributes else ''}"
    inner = [line for member in members for line in member]
    return [opening + ">", *inner, f"</{name}>"] if inner else [opening + "/>"]


def array(name: str, items: list[list[Lines]], kind: str = "xsd:other") -> Lines:
    """A SOAP-encoded array (QtSoapArray): ``<item>`` members with their positions."""
    return struct(name, *(struct("item", *members, attributes=ITEM_ATTRIBUTES.format(index=index))
                          for index, members in enumerate(items)),
                  attributes=ARRAY_ATTRIBUTES.format(xsi=XSI, kind=kind))


def envelope(method: Lines | None) -> bytes:
    """A whole message; ``None``: the empty Body CTK answers when its processor set no reply."""
    body = [f"<SOAP-ENV:Body {BODY_ATTRIBUTES}>", *method, "</SOAP-ENV:Body>"] if method is not None else [
        f"<SOAP-ENV:Body {BODY_ATTRIBUTES}/>"]
    return ("\n".join([ENVELOPE_OPEN, *body, "</SOAP-ENV:Envelope>"]) + "\n").encode("utf-8")


def request(operation: str, namespace: str, *arguments: Lines) -> bytes:
    """A request of CTK's client: the method element in ``namespace`` (CTK: PS3.19 + the URL's path)."""
    return envelope(struct(operation, *arguments, attributes=f'xmlns="{namespace}"'))


def answer(operation: str, result: Lines, namespace: str | None = None) -> bytes:
    """An answer of CTK's application server: ``<OpResponse>`` holding the result."""
    return envelope(struct(f"{operation}Response", result,
                           attributes=f'xmlns="{namespace}"' if namespace else ""))


def locator_item(locator: dict) -> list[Lines]:
    """The members of one ObjectLocator ``<item>``, in CTK's order (the XSD's)."""
    return [
        value("Length", str(locator["Length"]), "int"),
        value("Offset", str(locator["Offset"]), "int"),
        struct("TransferSyntax", value("Uid", locator["TransferSyntax"])),
        value("URI", locator["URI"]),
        struct("Locator", value("Uuid", locator["Locator"])),
        struct("Source", value("Uuid", locator["Source"])),
    ]


def get_data_answer(locators: list[dict]) -> bytes:
    """CTK's GetData answer: a SOAP-encoded array of ``<item>`` locators, unqualified, in a response element
    whose namespace CTK hard-codes."""
    return answer("GetData", array("GetDataResult", [locator_item(l) for l in locators], "xsd:string"),
                  APP_SERVICE_NS)


def http_answer(body: bytes) -> bytes:
    """CTK's HTTP answer (ctkSoapConnectionRunnable): bare ``\\n`` line ends, no Date, no Connection."""
    return (b"HTTP/1.1 200 OK\nContent-Type: text/xml;charset=utf-8\nContent-Length: "
            + str(len(body.decode("utf-8"))).encode() + b"\n\n" + body)


def http_request(host: str, path: str, operation: str, body: bytes) -> bytes:
    """CTK's HTTP request (QNetworkAccessManager under ctkSimpleSoapClient)."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: text/xml;charset=utf-8",
            f"SOAPAction: http://dicom.nema.org/PS3.19/IHostService/{operation}", f"Content-Length: {len(body)}",
            "Connection: Keep-Alive", "Accept-Encoding: gzip, deflate", "Accept-Language: en,*",
            "User-Agent: Mozilla/5.0"]
    return "".join(line + "\r\n" for line in head).encode() + b"\r\n" + body
