"""The unguessable tokens of the host: instance endpoints, http: output locations, admin tokens.

A token is the only credential of what it names (PS3.19 calls carry no identity), so every one is made
here, the same way: 192 bits from :mod:`secrets`, URL-safe base64 (32 characters, a path segment as it is).
"""
from __future__ import annotations

import secrets

TOKEN_BYTES = 24


def new_token() -> str:
    """A fresh token: 192 random bits as 32 URL-safe characters."""
    return secrets.token_urlsafe(TOKEN_BYTES)
