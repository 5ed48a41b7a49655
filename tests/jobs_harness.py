"""Shared helpers of the job tests: an app registry file, ``dicom-host worker`` and ``dicom-host submit`` as
real subprocesses, and waits with deadlines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

from run_harness import ENV, REPO

T = TypeVar("T")

FAST_TIMEOUTS = {"startup": 20, "state": 8, "task": 60, "call": 10, "exit": 3}


def app_entry(module: str, *args: str, **fields) -> dict:
    """A registry entry running ``python -m module args``; ``fields`` are the entry's other keys."""
    return {"command": [sys.executable, "-m", module, *args], "timeouts": dict(FAST_TIMEOUTS), **fields}


def write_registry(path: Path, apps: dict[str, dict]) -> Path:
    """The TOML of ``serve --apps`` (written by hand: the standard library reads TOML, it does not write it)."""
    lines: list[str] = []
    for name, entry in apps.items():
        lines.append(f"[apps.{name}]")
        tables = {}
        for key, value in entry.items():
            if isinstance(value, dict):
                tables[key] = value
            else:
                lines.append(f"{key} = {_toml(value)}")
        for key, table in tables.items():
            lines.append(f"[apps.{name}.{key}]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def dicom_host(*args: str) -> list[str]:
    return [sys.executable, "-m", "hosting_service.cli.main", *args]


def start_worker(server_url: str, *args: str, log: Path, env: Optional[dict] = None) -> subprocess.Popen:
    """``dicom-host worker`` on ``server_url``, its log in ``log``; its own session, so a signal to it
    reaches it alone."""
    with open(log, "ab") as out:
        return subprocess.Popen(dicom_host("worker", "--server", server_url, "--log-level", "debug", *args),
                                stdout=out, stderr=subprocess.STDOUT, env={**ENV, **(env or {})}, cwd=REPO,
                                start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL to its group if it does not end in ``timeout`` seconds; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def submit(server_url: str, *args: str, env: Optional[dict] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(dicom_host("submit", "--server", server_url, *args), capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})}, cwd=REPO)


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout: float, interval: float = 0.2) -> T:
    """``probe()``'s first true value within ``timeout`` seconds; fails the test naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def app_pid(admin, instance_id: str) -> Optional[int]:
    """The pid of the application the runner launched for an instance (its ``run`` event), once known."""
    events, _ = admin.events(instance_id, kinds=["run"])
    return events[0]["data"]["pid"] if events else None


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
