"""A real Docker engine for the tests of app containers: the one that runs, or a ``dockerd`` started here (as
root, when the binary exists and none answers) and stopped at the end; and the images they use, built by
the project's own scripts when missing. :func:`unavailable` says why there is none (the tests skip with it).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
APPS_IMAGE = os.environ.get("DICOM_HOST_APPS_IMAGE", "dicom-host-apps:latest")
SERVER_IMAGE = os.environ.get("DICOM_HOST_IMAGE", "dicom-host:latest")
"""Both built from this checkout by scripts/build-images.sh (:meth:`Engine.image` of the apps image)."""
PYTHON_IMAGE = os.environ.get("PYTHON_IMAGE", "python:3.11-slim")
_START_SECONDS = 60.0


def _client() -> Optional[Any]:
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine answers (or no docker package): the caller decides
        return None


class Engine:
    """The engine the tests use, and the ``dockerd`` they started, if they did."""

    def __init__(self) -> None:
        self.client: Optional[Any] = None
        self.reason = ""
        self._dockerd: Optional[subprocess.Popen] = None
        self._log: Optional[Path] = None

    def start(self) -> "Engine":
        try:
            import docker  # noqa: F401
        except ImportError:
            self.reason = "the docker package is not installed (pip install -e '.[containers]')"
            return self
        self.client = _client()
        if self.client is not None:
            return self
        dockerd = shutil.which("dockerd")
        if dockerd is None or os.geteuid() != 0 or os.environ.get("DOCKER_HOST"):
            self.reason = ("no Docker engine answers, and none can be started here "
                           f"({'no dockerd binary (apt-get install docker.io)' if dockerd is None else 'not root'})")
            return self
        self._log = Path(tempfile.mkstemp(prefix="dicom-host-test-dockerd-", suffix=".log")[1])
        with open(self._log, "wb") as log:
            self._dockerd = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline and self._dockerd.poll() is None:
            self.client = _client()
            if self.client is not None:
                return self
            time.sleep(0.5)
        self.reason = f"dockerd did not come up: {self._log.read_text(errors='replace')[-2000:]}"
        self.stop()
        return self

    def image(self, name: str) -> Optional[str]:
        """Make sure ``name`` is there: the Python base image (built by scripts/base-images.sh when missing)
        or the apps image (built by scripts/build-images.sh from this checkout, seconds when its layers are
        cached); why it cannot be, or ``None``."""
        assert self.client is not None
        import docker

        if name == PYTHON_IMAGE:
            try:
                self.client.images.get(name)
                return None
            except docker.errors.ImageNotFound:
                pass
        script = "base-images.sh" if name == PYTHON_IMAGE else "build-images.sh"
        done = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"scripts/{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return None

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self._dockerd is not None and self._dockerd.poll() is None:
            self._dockerd.send_signal(signal.SIGTERM)
            try:
                self._dockerd.wait(30)
            except subprocess.TimeoutExpired:
                self._dockerd.kill()
                self._dockerd.wait()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
