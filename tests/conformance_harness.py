"""Shared helpers of the ``test_conformance_*`` tests: ``dicom-host conformance app`` as a real
subprocess, its JSON report read back."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from run_harness import ENV, REPO


@dataclass
class Suite:
    returncode: int
    report: dict
    stderr: str
    seconds: float

    def verdicts(self) -> dict[str, str]:
        return {s["id"]: s["verdict"] for s in self.report["scenarios"]}

    def failed(self) -> set[str]:
        return {i for i, v in self.verdicts().items() if v == "fail"}

    def scenario(self, scenario_id: str) -> dict:
        return next(s for s in self.report["scenarios"] if s["id"] == scenario_id)

    def describe(self) -> str:
        lines = [f"exit {self.returncode}; {self.seconds:.1f} s"]
        for s in self.report.get("scenarios", []):
            if s["verdict"] == "fail":
                lines.append(f"{s['id']}: {s['rule']}: expected {s['expected']}; observed {s['observed']}")
                lines.extend("    " + m for m in s["messages"][-15:])
        return "\n".join(lines) + "\n" + self.stderr[-2000:]


def conformance_app(app: str, *args: str, timeout: float = 240) -> Suite:
    """``dicom-host conformance app --app APP --format json ARGS`` to its end."""
    import time

    argv = [sys.executable, "-m", "hosting_service.cli.main", "conformance", "app", "--app", app, "--format", "json",
            *args]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return Suite(done.returncode, report, done.stderr, time.monotonic() - started)


def report_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir()}
