"""Who may use the admin API.

With ``DICOM_HOST_ADMIN_TOKEN`` set, every client must send ``Authorization: Bearer <token>``, from
wherever it is. Without it the API answers loopback clients only, and only requests whose ``Host`` header
names this server: the configured public URL's host or a loopback name (``localhost``, ``127.0.0.1``,
``[::1]``), with any port. The source address alone is not enough: a web page from another site can make
the browser of someone on this machine send requests to a loopback port under the site's own name (DNS
rebinding), and such a request carries that foreign name in its ``Host`` header.
"""
from __future__ import annotations

import hmac
import ipaddress
from typing import Optional
from urllib.parse import urlsplit

from hosting_service.config import Settings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(address: Optional[str]) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> Optional[str]:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lower-case and
    without brackets or port; ``None`` when the header is not of that form."""
    try:
        parts = urlsplit("//" + header.strip())
        name, _ = parts.hostname, parts.port  # .port raises ValueError for a non-numeric port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.fragment or parts.username is not None:
        return None
    return name


class AdminAccess:
    """Decides whether a request may use the admin API (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.token = settings.admin_token
        public_name = urlsplit(settings.public_url).hostname
        self.names = LOOPBACK_NAMES | ({public_name.lower()} if public_name else set())

    def refusal(self, environ: dict) -> Optional[tuple[int, str]]:
        """``(HTTP status, reason)`` when the request may not use the admin API, ``None`` when it may."""
        if self.token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return 401, "admin API: missing or wrong bearer token"
            return None
        if not is_loopback(environ.get("REMOTE_ADDR")):
            return 403, "admin API answers loopback clients only (set DICOM_HOST_ADMIN_TOKEN to allow others)"
        host = environ.get("HTTP_HOST", "")
        if host_name(host) not in self.names:
            return 403, (f"admin API: Host {host[:100]!r} does not name this server (without an admin token only "
                         f"{', '.join(sorted(self.names))} are accepted, with any port)")
        return None
