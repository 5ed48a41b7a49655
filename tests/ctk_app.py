"""A scripted CTK hosted application: on the wire, byte for byte what an application built on CTK's
hosted-app library (``ctkDicomAbstractApp``, QtSoap, ``ctkSoapConnectionRunnable``) sends and answers.

    python tests/ctk_app.py --hostURL U1 --applicationURL U2 [--record FILE]

Like ``examples/ctk-hosted-app`` (a real CTK plug-in), it reads its inputs through GetData, writes a result
(one CSV line per input: UUID, size, SHA-256) to its output location, announces it with CTK's helpers'
descriptor (a top-level text/plain object whose ClassUID, TransferSyntaxUID and Modality are empty, its
URI ``"file:///" + absolute path``), reports an INFORMATION status (as CTK's integer)
and COMPLETED. Its messages come from :mod:`ctk_wire`, which reproduces the recorded CTK messages.

Its server behaves as CTK's: answers with bare ``\\n`` line ends and no Date or Connection header; a
pool of two threads, each held by one kept-alive connection for as long as it stays open (CTK's pool is
as large as the machine has cores), a third connection waits; GetData answers SOAP-encoded ``<item>``
arrays, an unknown UUID a zero locator; ReleaseData aborts the process (CTK: ``std::bad_cast``) with the
connection closed and no answer; an operation it has no processor for gets no answer at all. State
changes run on the main thread (Qt's queued connections), except what ``ctkDicomAbstractApp::setState``
does inside the request: IDLE after COMPLETED and CANCELED are notified before it answers.

``--record FILE`` appends one JSON line per connection opened or closed (with the number open) and per
request (its operation), for the tests. ``--serve-output`` (not CTK's way: its helpers hand out file:
URIs) points the result's locator at the application's own server, which answers a GET of it on the same
kept-alive connections: a test of the host reading an application's own endpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import resource
import socket
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

import ctk_wire as w

POOL_THREADS = 2
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


class Record:
    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.Lock()
        self.open = 0

    def write(self, **event) -> None:
        if self.path:
            with self.lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")

    def connection(self, delta: int) -> None:
        with self.lock:
            self.open += delta
            event = {"event": "connect" if delta > 0 else "close", "open": self.open}
        self.write(**event)


class HostInterface:
    """CTK's client of the host (ctkSimpleSoapClient): one kept-alive connection per calling thread."""

    def __init__(self, host_url: str):
        parts = urlsplit(host_url)
        self.address = (parts.hostname, parts.port)
        self.host = parts.netloc
        self.path = parts.path
        self.namespace = "http://dicom.nema.org/PS3.19" + parts.path  # ctkSimpleSoapClient::submitSoapRequest
        self.local = threading.local()

    def call(self, operation: str, *arguments: w.Lines) -> etree._Element:
        message = w.http_request(self.host, self.path, operation, w.request(operation, self.namespace, *arguments))
        for attempt in (1, 2):  # QNetworkAccessManager reconnects when a kept-alive connection was closed
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = socket.create_connection(self.address, timeout=60)
            try:
                connection.sendall(message)
                return _read_answer(connection.makefile("rb"))
            except (OSError, EOFError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def notify_state_changed(self, state: str) -> None:
        self.call("NotifyStateChanged", w.value("state", state))


def _read_answer(stream) -> etree._Element:
    status = stream.readline()
    if not status:
        raise EOFError("the host closed the connection")
    length = 0
    for line in iter(stream.readline, b"\r\n"):
        if not line:
            raise EOFError("the host closed the connection")
        name, _, text = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(text)
    body = stream.read(length)
    if not status.split()[1].startswith(b"2"):
        raise RuntimeError(f"host answered {status!r}: {body[:300]!r}")
    return etree.fromstring(body)


def _texts(root: etree._Element, name: str) -> list[str]:
    return [(e.text or "").strip() for e in root.iter(f"{{*}}{name}")]


class CtkApp:
    def __init__(self, host_url: str, application_url: str, record: Record, serve_output: bool = False):
        self.host = HostInterface(host_url)
        self.serve_output = serve_output
        self.served: dict[str, bytes] = {}
        self.application = urlsplit(application_url)
        self.record = record
        self.state = "IDLE"
        self.incoming: list[str] = []
        self.last_data = False
        self.processed = False
        self.locators: dict[str, dict] = {}
        self.events: queue.Queue = queue.Queue()

    # --- main thread (Qt's event loop) -------------------------------------------------------------------

    def run(self) -> int:
        listener = socket.create_server((self.application.hostname, self.application.port))
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()
        self.host.notify_state_changed("IDLE")
        while True:
            event = self.events.get()
            if event == "startProgress":
                self.processed, self.incoming, self.last_data = False, [], False
                self.state = "INPROGRESS"
                self.host.notify_state_changed("INPROGRESS")
            elif event == "dataAvailable":
                if self.last_data and self.state == "INPROGRESS" and not self.processed:
                    self.processed = True
                    self._process()
            elif event == "cancelProgress":
                self.state = "IDLE"
                self.host.notify_state_changed("IDLE")
            elif event == "exitHostedApp":
                self.state = "EXIT"
                self.host.notify_state_changed("EXIT")
                return 0

    def _process(self) -> None:
        answer = self.host.call(
            "GetData",
            w.struct("objects", *(w.struct("UUID", w.value("Uuid", u)) for u in self.incoming)),
            w.struct("acceptableTransferSyntaxes", w.struct("Uid", w.value("Uid", EXPLICIT_VR_LITTLE_ENDIAN))),
            w.value("includeBulkData", "true", "boolean"),
        )
        lines = ["uuid,size,sha256"]
        for locator in answer.iter("{*}ObjectLocator"):
            uri, offset, length = _texts(locator, "URI")[0], int(_texts(locator, "Offset")[0]), int(_texts(locator, "Length")[0])
            with open(unquote(urlsplit(uri).path), "rb") as f:
                f.seek(offset)
                data = f.read(length) if length > 0 else f.read()
            source = _texts(locator.find("{*}Source"), "Uuid")[0]
            lines.append(f"{source},{len(data)},{hashlib.sha256(data).hexdigest()}")
        location = self.host.call("GetOutputLocation", w.struct("preferredProtocols", w.struct("string", w.value("Uid", "file:"))))
        folder = Path(unquote(urlsplit(_texts(location, "GetOutputLocationResult")[0]).path))
        folder.mkdir(parents=True, exist_ok=True)
        result = folder / "ctk-digests.csv"
        result.write_text("\n".join(lines) + "\n", encoding="utf-8")
        descriptor = str(uuid.uuid4())
        uri = "file:///" + str(result.absolute())
        if self.serve_output:
            self.served["/" + result.name] = result.read_bytes()
            uri = f"http://{self.application.netloc}/{result.name}"
        self.locators[descriptor] = {"Length": result.stat().st_size, "Offset": 0, "TransferSyntax": "",
                                     "URI": uri, "Locator": descriptor, "Source": descriptor}
        self.host.call("NotifyDataAvailable", w.struct(
            "data",
            w.array("ObjectDescriptors", [[
                w.struct("DescriptorUuid", w.value("Uuid", descriptor)),
                w.struct("MimeType", w.value("Type", "text/plain")),
                w.struct("ClassUID", w.value("Uid", "")),
                w.struct("TransferSyntaxUID", w.value("Uid", "")),
                w.struct("Modality", w.value("Modality", "")),
            ]]),
            w.array("Patients", []),
        ), w.value("lastData", "true", "boolean"))
        self.host.call("NotifyStatus", w.struct(
            "status", w.value("StatusType", "0", "int"), w.value("CodingSchemeDesignator", "99CTKAPP"),
            w.value("CodeValue", "1"), w.value("CodeMeaning", f"digests of {len(lines) - 1} objects")))
        self.state = "COMPLETED"
        self.host.notify_state_changed("COMPLETED")

    # --- the application server (ctkSoapConnectionRunnable) ----------------------------------------------

    def _serve(self, listener: socket.socket) -> None:
        pool = ThreadPoolExecutor(max_workers=POOL_THREADS)
        while True:
            connection, _ = listener.accept()
            self.record.connection(+1)
            pool.submit(self._connection, connection)

    def _connection(self, connection: socket.socket) -> None:
        stream = connection.makefile("rb")
        try:
            while True:
                length = -1
                line = request_line = stream.readline()
                if not line:
                    return
                while line.strip():
                    if line.startswith(b"Content-Length: "):
                        length = int(line.split(b":", 1)[1])
                    line = stream.readline()
                body = stream.read(length) if length > 0 else b""
                if request_line.startswith(b"GET "):
                    self.record.write(event="request", operation="GET")
                    data = self.served.get(request_line.split()[1].decode(), b"")
                    connection.sendall(b"HTTP/1.1 200 OK\nContent-Length: %d\n\n" % len(data) + data)
                    continue
                answer = self._answer(etree.fromstring(body)) if body.strip() else w.envelope(None)
                if answer is not None:
                    connection.sendall(w.http_answer(answer))
        except OSError:
            return
        finally:
            connection.close()
            self.record.connection(-1)

    def _answer(self, message: etree._Element) -> bytes | None:
        method = next(message.find(f"{{{w.SOAP_ENV}}}Body").iterchildren(etree.Element))
        operation = etree.QName(method).localname
        self.record.write(event="request", operation=operation)
        if operation == "GetState":
            return w.answer("GetState", w.value("GetStateResult", self.state))
        if operation == "SetState":
            accepted = self._set_state(_texts(method, "state")[0] if _texts(method, "state") else "")
            return w.answer("SetState", w.value("SetStateResult", "true" if accepted else "false", "boolean"))
        if operation == "BringToFront":
            return w.answer("BringToFront", w.value("BringToFrontResult", "true", "boolean"))
        if operation == "NotifyDataAvailable":
            self.incoming.extend(_texts(method.find("{*}data"), "Uuid"))
            self.last_data = (_texts(method, "lastData") or ["false"])[0].lower() == "true"
            self.events.put("dataAvailable")
            return w.answer("NotifyDataAvailable", w.value("NotifyDataAvailableResult", "true", "boolean"))
        if operation == "GetData":
            zero = {"Length": 0, "Offset": 0, "TransferSyntax": "", "URI": "", "Locator": ZERO_UUID, "Source": ZERO_UUID}
            wanted = _texts(method.find("{*}objects"), "Uuid")
            return w.get_data_answer([self.locators.get(u, zero) for u in wanted])
        if operation == "ReleaseData":
            os.abort()  # dynamic_cast<const QtSoapArray&> on a struct: std::bad_cast, terminate
        return None  # "No processor found": a fault, which CTK never sends

    def _set_state(self, state: str) -> bool:
        """ctkDicomAbstractApp::setState."""
        if state == "IDLE" and self.state == "COMPLETED":
            self.host.notify_state_changed("IDLE")
            self.state = "IDLE"
            return True
        if state == "INPROGRESS" and self.state == "IDLE":
            self.events.put("startProgress")
            return True
        if state == "CANCELED" and self.state in ("INPROGRESS", "SUSPENDED"):
            self.host.notify_state_changed("CANCELED")
            self.state = "CANCELED"
            self.events.put("cancelProgress")
            return True
        if state == "EXIT" and self.state == "IDLE":
            self.events.put("exitHostedApp")
            return True
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hostURL", required=True)
    parser.add_argument("--applicationURL", required=True)
    parser.add_argument("--record")
    parser.add_argument("--serve-output", action="store_true")
    options = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort leaves no core file behind
    return CtkApp(options.hostURL, options.applicationURL, Record(options.record), options.serve_output).run()


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # qApp->exit(): the process ends with its server's threads
