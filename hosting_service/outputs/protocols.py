"""Which output-location protocol an application gets (PS3.19 §8.2.3).

The application lists, in order of preference, the protocols it can write with; the standard spells
them ``"http:"`` and ``"file:"`` and real applications send ``"file:"``, ``"FILE"``, ``"http"`` ...
(PS3.19 §8.2.3). The host "selects the most appropriate protocol, potentially taking into account
system or security considerations as well as the order of preference": here the deployment's
``output_protocols`` setting is that consideration (``http`` only when applications run in other
containers or on other machines, ``file`` only when they share the host's filesystem).

http: and https: name one thing on this host: the upload service behind ``public_url``. Its scheme is
whatever ``public_url`` says, so ``http`` and ``https`` in ``output_protocols`` both switch it on. An
application that asks for ``http:`` accepts it under either scheme (it already reaches the host's
SOAP endpoint at that same base URL); one that asks for ``https:`` only when ``public_url`` is https.

An instance whose ``file_uris`` option is false (its application does not share the host's filesystem)
gets only the web protocol: a preference for ``file:`` is answered with it too, as the most appropriate
location this host has for that application. A deployment that offers no web protocol cannot serve such an
instance at all: a Server fault naming the settings, since the application did nothing wrong.
"""
from __future__ import annotations

from typing import Iterable, Optional

from hosting_service.config import normalize_protocol
from hosting_service.errors import ClientError, ServerConfigurationError

WEB = ("http", "https")


def offered_protocols(allowed: Iterable[str], web_scheme: str) -> list[str]:
    """The protocols this deployment hands out, in the order of its setting: ``file`` and/or the scheme of
    its public URL."""
    offered: list[str] = []
    for protocol in allowed:
        candidate = web_scheme if protocol in WEB else protocol
        if candidate not in offered:
            offered.append(candidate)
    return offered


def choose_protocol(preferred: Optional[list[str]], allowed: Iterable[str], web_scheme: str, *,
                    file_uris: bool = True) -> str:
    """The first of the application's ``preferred`` protocols the deployment offers.

    ``allowed`` is the ``output_protocols`` setting, ``web_scheme`` the scheme of ``public_url``. Entries
    the host does not understand (``"ftp:"``) are passed over, as the standard's "order of preference"
    suggests; blank entries count as absent, and no preference at all gets the deployment's first
    protocol. Raises :class:`ClientError` (a SOAP Client fault) listing what the host offers when
    nothing the application named is offered. With ``file_uris`` false, only the web protocol is handed
    out, whatever the preference (module docstring).
    """
    offered = offered_protocols(allowed, web_scheme)
    if not file_uris:
        if web_scheme not in offered:
            raise ServerConfigurationError(
                "GetOutputLocation: this instance may not use file: URIs (its file_uris option, default "
                "DICOM_HOST_FILE_URIS) but the host offers no http: output locations "
                "(DICOM_HOST_OUTPUT_PROTOCOLS); the host's operator must allow one or the other")
        return web_scheme
    wishes = [p for p in (preferred or []) if p and str(p).strip()]
    if not wishes:
        return offered[0]
    for wish in wishes:
        try:
            protocol = normalize_protocol(wish)
        except ValueError:
            continue
        if protocol == "file" and "file" in offered:
            return "file"
        if protocol == "http" and web_scheme in offered:
            return web_scheme
        if protocol == "https" and "https" in offered:
            return "https"
    raise ClientError(
        f"GetOutputLocation: none of the preferred protocols ({', '.join(map(str, wishes))}) is offered by "
        f"this host; it offers: {', '.join(p + ':' for p in offered)}"
    )
