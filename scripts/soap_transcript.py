#!/usr/bin/env python3
"""Decode the SOAP traffic of a loopback capture (``tcpdump -i lo -w FILE``) into a readable transcript.

    python3 scripts/soap_transcript.py CAPTURE.pcap [PORT...] > wire.txt

Every TCP connection (to or from one of the PORTs, when given) that carried a SOAP message (a SOAPAction header or an XML body) is reassembled, cut
into HTTP messages (Content-Length or chunked framing) and printed in time order, in the format of the
transcripts in ``tests/data/ctk/``:

    ===== t=   0.043  48960 -> 46751  POST /ApplicationService-20100825 HTTP/1.1
    <the head, a literal \\r before each CRLF line end; a line without one ended in a bare \\n>
    -----
    <the body: XML re-indented one space a level, anything else as text>

Only the standard library (and lxml, when present, for the re-indenting). Reads pcap files of link types
Ethernet, Linux cooked (v1 and v2), BSD loopback and raw IP, IPv4 and IPv6.
"""
from __future__ import annotations

import struct
import sys
from collections import defaultdict
from dataclasses import dataclass, field

_LINK_HEADER = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0, 228: 0, 229: 0}


@dataclass
class Flow:
    segments: list[tuple[int, float, bytes]] = field(default_factory=list)

    def stream(self) -> tuple[bytes, list[tuple[int, float]]]:
        """The flow's bytes in sequence order (retransmissions dropped) and (offset, time) of each segment."""
        data, marks, expected = bytearray(), [], None
        for seq, time, payload in sorted(self.segments, key=lambda s: (s[0], s[1])):
            if expected is not None and seq < expected:
                payload = payload[expected - seq:]
                seq = expected
            if payload:
                marks.append((len(data), time))
                data += payload
                expected = seq + len(payload)
        return bytes(data), marks


def read_pcap(path: str) -> dict[tuple, Flow]:
    flows: dict[tuple, Flow] = defaultdict(Flow)
    with open(path, "rb") as f:
        header = f.read(24)
        magic = header[:4]
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        link = struct.unpack(endian + "I", header[20:24])[0] & 0xFFFF
        if link not in _LINK_HEADER:
            raise SystemExit(f"{path}: link type {link} is not supported")
        while True:
            record = f.read(16)
            if len(record) < 16:
                break
            seconds, fraction, captured, _ = struct.unpack(endian + "IIII", record)
            packet = f.read(captured)
            time = seconds + fraction / (1e9 if nano else 1e6)
            _add_packet(flows, packet[_LINK_HEADER[link]:], time)
    return flows


def _add_packet(flows: dict[tuple, Flow], ip: bytes, time: float) -> None:
    if not ip:
        return
    version = ip[0] >> 4
    if version == 4:
        if ip[9] != 6:
            return
        start, end = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        source, target = ip[12:16], ip[16:20]
    elif version == 6:
        if ip[6] != 6:
            return
        start, end = 40, 40 + struct.unpack("!H", ip[4:6])[0]
        source, target = ip[8:24], ip[24:40]
    else:
        return
    tcp = ip[start:end]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    payload = tcp[(tcp[12] >> 4) * 4:]
    if payload:
        flows[(source, sport, target, dport)].segments.append((seq, time, payload))


@dataclass
class HttpMessage:
    time: float
    source: int
    target: int
    head: bytes
    body: bytes

    @property
    def soap(self) -> bool:
        head = self.head.lower()
        return b"soapaction" in head or (b"xml" in head and self.body.lstrip()[:1] == b"<")


def split_messages(key: tuple, flow: Flow) -> list[HttpMessage]:
    data, marks = flow.stream()
    messages, offset = [], 0
    while offset < len(data):
        ends = [i for i in (data.find(b"\r\n\r\n", offset), data.find(b"\n\n", offset)) if i >= 0]
        if not ends:
            break
        end = min(ends)
        head = data[offset:end]
        body_start = end + (4 if data[end:end + 4] == b"\r\n\r\n" else 2)
        body, after = _body(head, data, body_start)
        time = max((t for o, t in marks if o <= offset), default=marks[0][1] if marks else 0.0)
        messages.append(HttpMessage(time, key[1], key[3], head, body))
        offset = after
    return messages


def _body(head: bytes, data: bytes, start: int) -> tuple[bytes, int]:
    headers = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        return data[start:start + length], start + length
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body, offset = bytearray(), start
        while True:
            line_end = data.find(b"\r\n", offset)
            if line_end < 0:
                return bytes(body), len(data)
            size = int(data[offset:line_end].split(b";")[0] or b"0", 16)
            offset = line_end + 2
            if size == 0:
                trailer = data.find(b"\r\n\r\n", offset - 2)
                return bytes(body), (trailer + 4) if trailer >= 0 else len(data)
            body += data[offset:offset + size]
            offset += size + 2
    first = head.split(b"\n", 1)[0]
    if first.startswith(b"HTTP/") or first.split(b" ", 1)[0] in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        return b"", start  # no body
    return data[start:], len(data)


def show_body(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    if body.lstrip()[:1] != b"<":
        return text
    try:
        from lxml import etree

        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        etree.indent(root, space=" ")
        return etree.tostring(root, encoding="unicode")
    except Exception:  # noqa: BLE001 - a transcript shows what it cannot parse as it is
        return text


def transcript(path: str, ports: frozenset[int] = frozenset()) -> str:
    flows = read_pcap(path)
    connections: dict[tuple, list[HttpMessage]] = {}
    for key, flow in flows.items():
        if not ports or key[1] in ports or key[3] in ports:
            connections[key] = split_messages(key, flow)
    soap_connections = {frozenset([(k[0], k[1]), (k[2], k[3])]) for k, messages in connections.items()
                        if any(m.soap for m in messages)}
    chosen = [m for k, messages in connections.items()
              if frozenset([(k[0], k[1]), (k[2], k[3])]) in soap_connections for m in messages]
    chosen.sort(key=lambda m: m.time)
    if not chosen:
        return ""
    start, out = chosen[0].time, []
    for message in chosen:
        lines = message.head.split(b"\n")
        shown = "\n".join(line[:-1].decode("latin-1") + "\\r" if line.endswith(b"\r") else line.decode("latin-1")
                          for line in lines)
        first = lines[0].rstrip(b"\r").decode("latin-1")
        out.append(f"===== t={message.time - start:8.3f}  {message.source} -> {message.target}  {first}\n"
                   f"{shown}\n-----\n{show_body(message.body)}\n")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    sys.stdout.write(transcript(sys.argv[1], frozenset(int(p) for p in sys.argv[2:])))
