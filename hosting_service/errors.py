"""Errors that are the peer's fault.

:class:`ClientError` carries a message written for the peer: the wire layer answers it with a SOAP
``Client`` fault whose faultstring is the message, the HTTP layers with a 4xx and the message. Anything
else raised while answering a request is the host's fault: a ``Server`` fault or a 500 with a generic
text, the details going to the log only.
"""
from __future__ import annotations


class ClientError(Exception):
    """A request the host understood but will not carry out, or could not understand."""

    http_status = 400

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status


class ServerConfigurationError(Exception):
    """The deployment's settings do not let the host carry out a request it should: a SOAP ``Server``
    fault (HTTP 5xx) whose message, unlike other Server faults, is shown, since it names the setting to
    change and holds nothing internal."""
