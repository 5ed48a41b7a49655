"""The port handed to an application for its --applicationURL is free and outside the kernel's ephemeral
range, from which outgoing connections take their source ports (and could take it before the app binds)."""
from __future__ import annotations

import socket

from hosting_service.ports import ephemeral_range, free_loopback_port


def test_application_ports_are_free_and_below_the_ephemeral_range():
    low, high = ephemeral_range()
    ports = {free_loopback_port() for _ in range(50)}
    assert len(ports) > 40  # drawn at random, not one fixed port
    for port in ports:
        if low > 10_064:  # room below the range (Linux's default starts at 32768)
            assert port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free
