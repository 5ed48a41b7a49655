"""Shared helpers of the ``test_run_*`` tests: ``dicom-host run`` as a real subprocess, its JSON event
stream and manifest read back, and the example applications' commands."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}

PYTHON = shlex.quote(sys.executable)
MIP_APP = f"{PYTHON} -m client.examples.mip_app"
MISBEHAVING_APP = f"{PYTHON} -m client.examples.misbehaving_app"

FAST = ["--startup-timeout", "20", "--state-timeout", "8", "--task-timeout", "30", "--call-timeout", "5",
        "--exit-grace", "3"]
"""Short timeouts, so a test that goes wrong fails in seconds, not minutes."""

EXIT_USAGE, EXIT_SERVER, EXIT_APP_FAILED, EXIT_TIMEOUT, EXIT_CANCELED = 2, 3, 4, 5, 6


def dicom_host_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "hosting_service.cli.main", "run", "--json", *args]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    output: Path

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def kinds(self, kind: str) -> list[dict]:
        return [e["data"] for e in self.events if e["kind"] == kind]

    def states(self) -> list[str]:
        """The states the application reported, in order."""
        return [d["to"] for d in self.kinds("state")]

    @property
    def manifest(self) -> dict:
        return json.loads((self.output / "manifest.json").read_text())

    def describe(self) -> str:
        return f"exit {self.returncode}; stderr: {self.stderr.strip()[-2000:]}"


def run_job(output: Path, *args: str, timeout: float = 90, server: Optional[str] = None) -> Run:
    """``dicom-host run --json --output OUTPUT ARGS`` to its end (on ``server`` if given)."""
    argv = dicom_host_run("--output", str(output), *FAST, *(["--server", server] if server else []), *args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)
    return Run(done.returncode, done.stdout, done.stderr, output)


def start_job(output: Path, *args: str, server: Optional[str] = None) -> subprocess.Popen:
    """The same, running: for tests that interrupt it. Its stdout is the JSON event stream."""
    argv = dicom_host_run("--output", str(output), *FAST, *(["--server", server] if server else []), *args)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)


def read_events_until(process: subprocess.Popen, kind: str, **match) -> list[dict]:
    """Events from a running job's stream up to the first ``kind`` event whose data has ``match``."""
    seen = []
    for line in process.stdout:
        event = json.loads(line)
        seen.append(event)
        if event["kind"] == kind and all(event["data"].get(k) == v for k, v in match.items()):
            return seen
    raise AssertionError(f"the job ended before a {kind} {match} event: {process.stderr.read()[-2000:]}")


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
