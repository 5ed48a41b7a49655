"""A hosted application's view of the Hosting System: a zeep client of HostService-20100825 at hostURL,
plus writing outputs to the output locations the host hands out."""
from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Optional, Union

import requests

import wsdl
from client.data_exchange import DataExchangeClient
from client.soap import SoapCallError
from hosting_service.model import Rectangle, Status
from hosting_service.states import State
from hosting_service.wire.types import HOST

HOST_BINDING = "{http://dicom.nema.org/PS3.19/HostService-20100825}HostService-YYYYNNDDBinding"
"""Sic: the standard's HostService WSDL names its binding with this unfilled placeholder."""


class HostCallError(SoapCallError):
    """A call to the Hosting System failed (unreachable, timeout, fault or unreadable answer)."""


class OutputWriteError(Exception):
    """Writing an output to an output location failed."""


class HostClient(DataExchangeClient):
    """HostService at ``host_url`` (PS3.19 §8.2 and §8.3)."""

    wsdl_path = wsdl.HOST_SERVICE_WSDL
    binding = HOST_BINDING
    wire_types = HOST
    error = HostCallError

    def generate_uid(self) -> str:
        """A new DICOM UID for objects the application creates (§8.2.1)."""
        return self.call("GenerateUID")

    def get_available_screen(self, preferred: Optional[Rectangle] = None) -> Rectangle:
        """Where the application may draw (§8.2.2); ``preferred`` is a hint."""
        return self.call("GetAvailableScreen", preferredScreen=preferred)

    def get_output_location(self, protocols: Iterable[str] = ("file:", "http:")) -> str:
        """A URI to write outputs to (§8.2.3), the protocols in order of preference. Only at INPROGRESS or
        COMPLETED. A host that answers nil (a lenient host outside those states) is an error here."""
        return self.call("GetOutputLocation", preferredProtocols=list(protocols))

    def notify_state_changed(self, state: State) -> None:
        """Report a transition (§8.2.4)."""
        self.call("NotifyStateChanged", state=state)

    def notify_status(self, status: Status) -> None:
        """Report a notable event (§8.2.5); FATALERROR precedes an application's own move to CANCELED."""
        self.call("NotifyStatus", status=status)

    def write_output(self, location: str, name: str, source: Union[bytes, Path]) -> str:
        """Store ``source`` (bytes or a file) at the output location ``location``; return its URI.

        A location ending in ``/`` is a directory and the object goes to ``<location><name>``; otherwise
        the location is the object's own URI (XIP-style file semantics). ``file:`` locations are written
        as files; ``http:``/``https:`` ones with one streamed PUT, which must answer 201 Created
        (the standard allows only a single sequential write there, §8.2.3 Note 1).
        """
        uri = location + urllib.parse.quote(name) if location.endswith("/") else location
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme == "file":
            _write_file(Path(urllib.request.url2pathname(urllib.parse.urlsplit(uri).path)), source)
        elif scheme in ("http", "https"):
            self._put(uri, source)
        else:
            raise OutputWriteError(f"cannot write to output location {location!r}: unsupported protocol {scheme!r}")
        return uri

    def _put(self, uri: str, source: Union[bytes, Path]) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        try:
            if isinstance(source, bytes):
                response = self.session.put(uri, data=source, headers=headers, timeout=self.timeout)
            else:  # requests streams an open file in blocks, with its size as Content-Length
                with open(source, "rb") as stream:
                    response = self.session.put(uri, data=stream, headers=headers, timeout=self.timeout)
        except (requests.RequestException, OSError) as exc:
            raise OutputWriteError(f"PUT {uri} failed: {exc}") from exc
        if response.status_code != 201:
            raise OutputWriteError(f"PUT {uri} answered {response.status_code}: {response.text[:200].strip()}")


def _write_file(path: Path, source: Union[bytes, Path]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            shutil.copyfile(source, path)
    except OSError as exc:
        raise OutputWriteError(f"writing {path} failed: {exc}") from exc
