"""Reading an admin request's JSON body within bounds: its size and its nesting depth.

``json.loads`` recurses once per nesting level, so a body of 100,000 ``[`` would end in a
``RecursionError`` (an internal error) after costing a deep stack; the depth is measured first, on the
raw bytes, without recursion. No admin request needs more than a few levels.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import Any

from hosting_service.errors import ClientError

MAX_JSON_BODY = 4 << 20
MAX_JSON_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(_STEP[b] for b in brackets), default=0)


def _not_json(constant: str) -> Any:
    """Python's json accepts NaN and Infinity, which JSON does not have (nor could the answers carry them)."""
    raise ValueError(f"{constant} is not a JSON value")


def read_json_object(environ: dict) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body). :class:`ClientError` (415, 400, 413) for a
    body that is not JSON, too large, too deep or not an object."""
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        # also what keeps a web page from posting here: browsers send JSON only after a CORS preflight
        raise ClientError("admin requests carry a JSON body: Content-Type: application/json", http_status=415)
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ClientError("bad Content-Length") from None
    if length < 0:
        raise ClientError("bad Content-Length")
    if length > MAX_JSON_BODY:
        raise ClientError(f"admin requests are limited to {MAX_JSON_BODY} bytes", http_status=413)
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        raise ClientError(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise ClientError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError("request body must be a JSON object")
    return body
