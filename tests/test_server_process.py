"""The server process: slow clients, read timeouts, connection bound, the listening socket, startup errors,
settings from the environment, gunicorn's control socket and its log lines (real ``dicom-host serve``)."""
from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import HOST_NS, soap_post

SERVE = [sys.executable, "-m", "hosting_service.cli.main", "serve"]


def generate_uid(host_url: str) -> requests.Response:
    return soap_post(host_url, f'<GenerateUID xmlns="{HOST_NS}"/>', timeout=10)


def timed(call) -> float:
    start = time.monotonic()
    call()
    return time.monotonic() - start


class Tricklers:
    """``count`` connections that each send their request a byte at a time, never finishing it."""

    def __init__(self, port: int, requests_: list[bytes]):
        self.socks = []
        self.rest = []
        for request in requests_:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request[:1])
            self.socks.append(sock)
            self.rest.append(request[1:])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stopped.wait(0.5):
            for i, sock in enumerate(self.socks):
                if self.rest[i]:
                    try:
                        sock.sendall(self.rest[i][:1])
                    except OSError:
                        pass
                    self.rest[i] = self.rest[i][1:]

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def test_slow_clients_do_not_lock_others_out(server_factory):
    """200 connections that send one byte, trickle a head, a SOAP body or an upload body: /healthz and a SOAP
    call from someone else are still answered within a second."""
    server = server_factory()
    inst = server.create_instance()
    token_path = inst["hostURL"].split("127.0.0.1:", 1)[1].split("/", 1)[1]
    soap_head = (f"POST /{token_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                 f"Content-Length: 5000\r\n\r\n").encode()
    upload_head = b"PUT /outputs/" + b"t" * 32 + b"/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
    kinds = [b"G", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 500,
             soap_head + b"<" * 4000, upload_head + b"u" * 4000]
    slow = Tricklers(server.port, [kinds[i % 4] for i in range(200)])
    try:
        time.sleep(2)  # every slow request has started arriving (heads sent, bodies begun)
        for _ in range(3):
            assert timed(lambda: requests.get(server.url + "/healthz", timeout=10).raise_for_status()) < 1.0
            assert timed(lambda: generate_uid(inst["hostURL"]).raise_for_status()) < 1.0
    finally:
        slow.close()


def test_a_request_must_arrive_within_the_read_timeout(server_factory):
    server = server_factory("--read-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /admin/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n{")
        answer = sock.recv(1000)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert sock.recv(1000) == b""  # and the connection is closed


class _Responses:
    """Answers read one after the other from one connection (pipelining), with http.client."""

    def __init__(self, sock: socket.socket):
        self.file = sock.makefile("rb")

    def makefile(self, *args, **kwargs):
        return self  # one buffer for every answer; http.client's close of it must not close it

    def __getattr__(self, name):
        return getattr(self.file, name)

    def close(self) -> None:
        pass

    def next(self) -> tuple[int, bytes]:
        response = http.client.HTTPResponse(self)  # type: ignore[arg-type]
        response.begin()  # skips 100 Continue
        return response.status, response.read()


def test_what_the_poller_reads_reaches_the_application_whole(host_server):
    """Pipelined requests, a chunked body and a client that waits for 100 Continue, all read in the poller."""
    json_post = b"POST /admin/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", host_server.port), timeout=10) as sock:
        responses = _Responses(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + json_post
                     + b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1;x=y\r\n}\r\n0\r\n\r\n")
        assert responses.next()[0] == 200
        assert responses.next()[0] == 201
        sock.sendall(json_post + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the body waits for it
        sock.sendall(b"{}")
        assert responses.next()[0] == 201


def test_a_head_too_large_is_refused_and_the_worker_serves_on(host_server):
    with socket.create_connection(("127.0.0.1", host_server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (70 << 10))
        assert sock.recv(1000).startswith(b"HTTP/1.1 431 ")
    assert requests.get(host_server.url + "/healthz", timeout=10).ok


def test_a_head_ended_by_bare_line_feeds_is_answered_at_once(host_server):
    """Not left to the read timeout: gunicorn's parser answers it from the bytes at hand."""
    with socket.create_connection(("127.0.0.1", host_server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\n\n")
        assert sock.recv(1000).startswith(b"HTTP/1.")


def test_connections_are_bounded_per_worker(server_factory):
    """Beyond --max-connections a worker accepts nothing more; what it holds is dropped at the read
    timeout, and then the others are served."""
    server = server_factory("--workers", "1", "--max-connections", "20", "--read-timeout", "2")
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    try:
        for sock in held:
            sock.sendall(b"G")
        time.sleep(0.5)
        start = time.monotonic()
        with pytest.raises(requests.Timeout):  # queued, not served: the worker is full
            requests.get(server.url + "/healthz", timeout=(5, 0.7))
        assert requests.get(server.url + "/healthz", timeout=10).ok  # once the 20 are dropped
        assert time.monotonic() - start < 6
    finally:
        for sock in held:
            sock.close()


def test_tokens_are_redacted_from_gunicorns_own_log_lines(server_factory):
    server = server_factory()
    token = server.create_instance()["hostURL"].split("/")[3]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /{token}/HostService-20100825\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(1000).startswith(b"HTTP/1.1 400 ")
    deadline = time.monotonic() + 10
    while "Invalid request" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Invalid request" in server.log()
    assert token not in server.log()
    assert "/<token>/HostService-20100825" in server.log()


def test_serve_on_an_address_in_use_exits_2_at_once_and_creates_nothing(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        start = time.monotonic()
        done = subprocess.run([*SERVE, "--bind", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert time.monotonic() - start < 5
    assert not (tmp_path / "data").exists()


def test_serve_takes_its_data_dir_from_the_environment(server_factory, tmp_path):
    """``DICOM_HOST_DATA_DIR`` without ``--data-dir``; and no gunicorn control socket anywhere (it would be
    shared by every server of the user: ``$XDG_RUNTIME_DIR`` or ``~/.gunicorn``)."""
    from conftest import HostServer

    home = tmp_path / "home"
    home.mkdir()
    env = {"DICOM_HOST_DATA_DIR": str(tmp_path / "from-env"), "HOME": str(home),
           "XDG_RUNTIME_DIR": str(home)}
    server = HostServer(tmp_path / "unused", env=env, data_dir_option=False)
    try:
        server.start()
        server.create_instance()
        assert (tmp_path / "from-env" / "store.sqlite3").exists()
        assert not (tmp_path / "unused").exists()
        assert list(home.iterdir()) == []
    finally:
        server.close()
