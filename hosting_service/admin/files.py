"""``GET|HEAD /admin/instances/<id>/files/<location id>/<name>...``: a file an application wrote to one of
its instance's output locations, for the runner (``dicom-host run``, workers) on another machine.

The handback answer names these URLs (``urls``), and :mod:`hosting_service.orchestration.retrieval` reads
them with the admin token: the runner never needs the server's filesystem. The file is read from the
folder that holds the location's files now (its own while active, the instance's results once it closed),
through the output-location layer, which refuses names leading out of it; it is served whole or by one
``Range`` (:mod:`hosting_service.spans`). Admin-authorised like every admin route.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from hosting_service.errors import ClientError
from hosting_service.outputs.locations import NotInOutputLocation, OutputLocations
from hosting_service.outputs.uris import check_name
from hosting_service.spans import Span, SpanGone, serve_span

FILES_ROUTE = re.compile(r"^/admin/instances/(?P<id>[^/]{1,128})/files/(?P<location>[0-9a-f]{32})/(?P<names>.*)$")
"""The files route; any other path under ``/admin/`` is the JSON API's."""


def file_url(public_url_base: str, instance_id: str, location_id: str, names: list[str]) -> str:
    """The admin URL of the file ``names`` of an output location (no names: the location itself, which
    the route answers with a 404 saying it is a folder)."""
    path = "/".join(quote(n, safe="") for n in names)
    return f"{public_url_base}/admin/instances/{quote(instance_id, safe='')}/files/{location_id}/{path}"


def serve_output_file(outputs: OutputLocations, environ, start_response, match: re.Match[str]):
    """Answer a request matched by :data:`FILES_ROUTE`; :class:`ClientError` (a JSON 4xx) for anything that
    names no file."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if method not in ("GET", "HEAD"):
        raise ClientError(f"{method} not allowed here; use GET, HEAD", http_status=405)
    if not match["names"]:
        raise ClientError(f"output location {match['location']} is a folder; its files are read by name",
                          http_status=404)
    try:  # PEP 3333: PATH_INFO is the percent-decoded path, its bytes as latin-1 characters
        names = [check_name(n) for n in match["names"].encode("latin-1").decode("utf-8").split("/")]
    except (UnicodeError, ValueError) as exc:
        raise ClientError(f"bad file name: {exc}", http_status=404) from None
    outputs.records.store.get_instance(match["id"])  # 404 "no such instance" for an unknown id
    try:
        path = outputs.location_file(match["id"], match["location"], names)
        return serve_span(environ, start_response, Span(path, 0, -1))
    except (NotInOutputLocation, SpanGone):
        raise ClientError(f"no file {'/'.join(names)!r} in output location {match['location']} of instance "
                          f"{match['id']}", http_status=404) from None
