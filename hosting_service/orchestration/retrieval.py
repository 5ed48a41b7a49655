"""Receiving the objects an application returns (PS3.19 §7.3, §8.3.2), one method per step, so that
each step has one place: what was announced, GetData, handing the URIs back, which URI may be read, reading
it, and ReleaseData.

**What the host reads.** An application is untrusted (it may point a locator at any file the host can
read, or at a service on the host's loopback), so by default the host reads an output only

* from the instance's own output locations, over http: from the server's admin API whatever the protocol
  of the location (the handback answer names a URL per returned URI; the runner needs no access to the
  server's filesystem), or
* from the application's own endpoint (the scheme, host and port of its applicationURL).

Anything else is refused: the object is listed in the manifest with ``status`` ``refused`` and a warning
says why. ``--trust-app-uris`` (``DICOM_HOST_TRUST_APP_URIS``) restores reading any file:, http: or https:
URI, for trusted applications on the same machine; each such read is noted.

Bytes are read with :mod:`hosting_service.located` (or :meth:`AdminClient.read_file` for the server's
URLs, with the admin token), streamed into the output folder while hashed, never held whole, and land
under their final name only once complete.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional
from urllib.parse import urlsplit

from hosting_service.admin.client import AdminError
from hosting_service.located import UnreadableObject, iter_located
from hosting_service.model import ObjectLocator, iter_descriptors
from hosting_service.orchestration.conversation import Application
from hosting_service.orchestration.manifest import REFUSED, output_entry
from hosting_service.orchestration.naming import object_name, read_sop_instance_uid, unique_name
from hosting_service.orchestration.outcome import JobFailure, Result
from hosting_service.orchestration.release import release_outputs
from hosting_service.orchestration.tasks import Entry, Task

if TYPE_CHECKING:
    import requests

RetrievalError = UnreadableObject


@dataclass
class Retrieved:
    path: Path
    size: int
    sha256: str


@dataclass
class Received:
    """What :meth:`Retrieval.collect` did for one task."""

    received: int = 0
    refused: int = 0


def same_origin(uri: str, endpoint: str) -> bool:
    """Whether ``uri`` is served where ``endpoint`` is: same scheme, host and port (default ports filled in)."""
    a, b = urlsplit(uri), urlsplit(endpoint)
    try:
        return (a.scheme.lower() in ("http", "https") and a.scheme.lower() == b.scheme.lower()
                and (a.hostname or "") == (b.hostname or "") and _port(a) == _port(b))
    except ValueError:  # a port that is not a number
        return False


def _port(parts) -> Optional[int]:
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


class Retrieval:
    """The outputs of one job's application, task after task."""

    def __init__(self, app: Application):
        self.app = app
        self.job = app.job
        self._taken = 0
        """Announcements received in earlier tasks."""
        self._http: Optional[requests.Session] = None
        self._server_urls: set[str] = set()
        """The admin URLs the last hand-back named: read with the admin client."""

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def collect(self, task: Task) -> Received:
        """Receive every output the application announced during ``task``."""
        entries = self.announced()
        done = Received()
        if not entries:
            return done
        locators = self.get_data(entries)
        urls = self.hand_back(locators)
        by_source = {(l.Source or "").lower(): l for l in locators}
        for entry in entries:
            locator = by_source.get((entry[0].DescriptorUuid or "").lower())
            if locator is None:
                continue
            uri = self.readable_uri(locator, urls)
            if uri is None:
                self.refuse(task, entry, locator)
                done.refused += 1
            else:
                self.store(task, entry, locator, uri)
                done.received += 1
        if self.job.options.output_models:
            self.save_models(entries)
        self.release(locators)
        missing = [e for e in entries if (e[0].DescriptorUuid or "").lower() not in by_source]
        if missing:
            raise JobFailure(Result.APP_FAILED, f"the application's GetData answer has no locator for "
                             f"{len(missing)} of the {len(entries)} objects it announced")
        return done

    def announced(self) -> list[Entry]:
        """The descriptors the application announced (NotifyDataAvailable) since the last task."""
        job = self.job
        announcements, last_data = job.server_call(lambda: job.admin.announced_outputs(job.instance_id))
        new, self._taken = announcements[self._taken :], len(announcements)
        if new and not last_data:
            job.notice("the application completed without announcing lastData=TRUE (PS3.19 §8.3.1)")
        return [e for data in new for e in iter_descriptors(data)]

    def get_data(self, entries: list[Entry]) -> list[ObjectLocator]:
        """GetData for every announced object, in the syntax it was written in first, else in what every
        data source must be able to provide (§8.3.2)."""
        from client.data_exchange import DEFAULT_TRANSFER_SYNTAXES

        syntaxes = list(dict.fromkeys([*(d.TransferSyntaxUID for d, *_ in entries if d.TransferSyntaxUID),
                                       *DEFAULT_TRANSFER_SYNTAXES]))
        uuids = [d.DescriptorUuid or "" for d, *_ in entries]
        return self.app.call(lambda client: client.get_data(uuids, syntaxes, include_bulk_data=True))

    def hand_back(self, locators: list[ObjectLocator]) -> dict[str, str]:
        """Return the URIs to the server (PS3.19 §8.2.3): their locations close before anything is read, so
        what is read is what the host keeps. The answer maps each URI of a file in one of the instance's
        output locations to the admin URL it is read from; a URI outside them has no entry."""
        job = self.job
        try:
            answer = job.admin.hand_back(job.instance_id, [l.URI for l in locators if l.URI])
        except AdminError as exc:
            raise JobFailure(Result.SERVER, f"the server did not take the output locations back: {exc}") from None
        urls = {uri: url for uri, url in dict(answer.get("urls") or {}).items()
                if isinstance(uri, str) and isinstance(url, str)}
        self._server_urls = set(urls.values())
        return urls

    def readable_uri(self, locator: ObjectLocator, urls: dict[str, str]) -> Optional[str]:
        """The URI to read ``locator``'s object from, or ``None`` when the host may not read it."""
        uri = locator.URI
        if not uri:
            raise JobFailure(Result.APP_FAILED, f"GetData gave no URI for {locator.Source}")
        if uri in urls:
            return urls[uri]
        if same_origin(uri, self.job.instance["applicationURL"]):
            return uri
        if self.job.options.trust_app_uris:
            self.job.notice(f"output read from outside this instance's output locations (--trust-app-uris): {uri}")
            return uri
        return None

    def refuse(self, task: Task, entry: Entry, locator: ObjectLocator) -> None:
        descriptor, patient, study, series = entry
        why = ("outside this instance's output locations and the application's own endpoint "
               "(--trust-app-uris reads it)")
        self.job.manifest.outputs.append(output_entry(task.number, descriptor, patient, study, series, locator,
                                                      status=REFUSED, reason=why))
        self.job.warn(f"output {descriptor.DescriptorUuid} refused: {locator.URI} is {why}",
                      descriptorUuid=descriptor.DescriptorUuid, uri=locator.URI)

    def store(self, task: Task, entry: Entry, locator: ObjectLocator, uri: str) -> None:
        """Read one output from ``uri`` at the locator's Offset/Length into the output folder, named after
        its SOP Instance UID when it is DICOM."""
        descriptor, patient, study, series = entry
        job = self.job
        folder = job.folder
        download = folder / f".download-{uuid.uuid4().hex}"
        try:
            if uri in self._server_urls:
                got = save(job.admin.read_file(uri, locator.Offset, locator.Length), uri, locator.Offset,
                           locator.Length, download)
            else:
                got = retrieve(uri, locator.Offset, locator.Length, download, session=self._session_for(uri),
                               timeout=job.options.call_timeout)
        except AdminError as exc:
            if exc.status is None or exc.status >= 500:  # the server failed, not the application
                raise JobFailure(Result.SERVER, f"the server did not give an output back: {exc}") from None
            raise JobFailure(Result.APP_FAILED, f"cannot read the application's output: {exc}") from None
        except RetrievalError as exc:
            raise JobFailure(Result.APP_FAILED, f"cannot read the application's output: {exc}") from None
        sop_instance_uid = read_sop_instance_uid(download) if descriptor.MimeType == "application/dicom" else None
        name = unique_name(folder, object_name(descriptor.DescriptorUuid, descriptor.MimeType, sop_instance_uid))
        download.rename(folder / name)
        job.manifest.outputs.append(output_entry(task.number, descriptor, patient, study, series, locator,
                                                 file=name, size=got.size, sha256=got.sha256,
                                                 sop_instance_uid=sop_instance_uid))
        job.record("retrieved", {"file": name, "size": got.size, "sha256": got.sha256})

    def save_models(self, entries: list[Entry]) -> None:
        """``--output-models``: the outputs' Native DICOM Models, read through the application's model
        interface (§8.3.3-§8.3.4) and saved under ``models/``; the manifest's ``models`` lists them."""
        from hosting_service.models.recipient import save_output_models

        uuids = [d.DescriptorUuid for d, *_ in entries if d.DescriptorUuid]
        summary = self.app.call(lambda client: save_output_models(client, uuids, self.job.folder))
        self.job.manifest.models.update(summary["models"])
        if summary["error"] or summary["failed"]:
            self.job.warn(f"models of the outputs: {summary['error'] or 'not offered for ' + ', '.join(summary['failed'])}",
                          failed=summary["failed"])
        self.job.record("models", {"saved": len(summary["models"]), "failed": len(summary["failed"])})

    def _session_for(self, uri: str) -> requests.Session:
        """The HTTP session to read ``uri`` with: on the application's own server, the one its SOAP client
        uses (one connection at a time to an application, PS3.19 peers are often small servers); else one
        of the run's own."""
        if same_origin(uri, self.job.instance["applicationURL"]):
            return self.app.client.session
        if self._http is None:
            self._http = _loopback_session(uri)
        return self._http

    def release(self, locators: list[ObjectLocator]) -> None:
        """ReleaseData for the locators GetData gave (PS3.19 §8.3.6), unless the application is CTK's; a
        failure is a warning, never the task's (:mod:`.release`)."""
        locator_ids = [l.Locator for l in locators if l.Locator]
        job = self.job
        job.server_call(lambda: release_outputs(self.app.client, job.admin, job.instance_id, locator_ids))


def _loopback_session(url: str) -> requests.Session:
    """A requests session for reading http: outputs. Loopback peers are never reached through a proxy; not
    consulting the environment for one saves about 0.7 ms per request (requests scans every variable)."""
    import requests

    session = requests.Session()
    if urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
        session.trust_env = False
    return session


def retrieve(uri: str, offset: int, length: int, destination: Path, *, session: requests.Session,
             timeout: float) -> Retrieved:
    """Copy ``length`` bytes from ``offset`` of ``uri`` to ``destination`` (0 or less: to the end)."""
    return save(iter_located(uri, offset, length, session=session, timeout=timeout), uri, offset, length,
                destination)


def save(chunks: Iterable[bytes], uri: str, offset: int, length: int, destination: Path) -> Retrieved:
    """Write ``chunks`` (``length`` bytes from ``offset`` of ``uri``, 0 or less: all) to ``destination``,
    hashed on the way, through a partial file renamed once complete."""
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if length > 0 and size != length:
            raise RetrievalError(f"{uri}: {size} bytes at offset {offset}, but the locator's Length is {length}")
        os.replace(partial, destination)
    except OSError as exc:
        raise RetrievalError(f"{uri}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return Retrieved(destination, size, digest.hexdigest())
