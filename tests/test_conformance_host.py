"""``dicom-host conformance host`` under our own ``dicom-host run``: every scenario passes, the reports come
back as the task's outputs, and the final report (with the scenarios run after the hand-over) is in the
application's log. With the server's ``--lenient`` mode (out-of-state calls answered nil instead of a
fault) exactly the scenarios about refusing those calls fail.

Expectations are written out by hand, independently of ``hosting_service.states``."""
from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hosting_service.dicom.samples import write_sample_series
from run_harness import ENV, FAST, PYTHON, REPO, dicom_host_run

PROBE = f"{PYTHON} -m hosting_service.cli.main conformance host"
ALL_SCENARIOS = {
    "wsdl", "allowed-not-started", "refused-not-started", "allowed-idle", "refused-idle", "allowed-inprogress",
    "allowed-completed", "refused-completed", "output-location-file", "output-location-http", "location-lifetime",
    "getdata-locators", "transfer-syntax", "models-native", "models-abstract", "models-unknown",
    "illegal-notification", "answers-schema",
}
AFTER_HAND_OVER = {"allowed-completed", "refused-completed", "location-lifetime", "illegal-notification"}
"""Run once the reports were handed to the host: "not applicable" in the collected copy."""


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=3, size=16)
    return folder


def probe_run(output: Path, series: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """``dicom-host run`` of the probe; ``(process, collected JSON report, final verdicts from app.log)``."""
    argv = dicom_host_run("--output", str(output), *FAST, "--app", PROBE, "--input", str(series))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**ENV, **env}, cwd=REPO)
    manifest = json.loads((output / "manifest.json").read_text())
    by_mime = {o["mimeType"]: output / o["file"] for o in manifest["outputs"]}
    collected = json.loads(by_mime["application/json"].read_text())
    log = (output / "app.log").read_text()
    text = log[log.index("----- conformance report (text) -----"):]
    final = dict((m.group(2), m.group(1).lower()) for m in re.finditer(r"\[([A-Z ]+)\] ([a-z-]+):", text))
    # the JUnit copy parses with a standard parser and has one test case per scenario
    junit = ET.parse(by_mime["text/xml"]).getroot()
    assert sorted(c.get("name") for c in junit.iter("testcase")) == sorted(ALL_SCENARIOS)
    return done, collected, final


def test_our_host_passes_every_scenario(tmp_path, series):
    # a small inline limit: the Native models' Pixel Data is BulkData, fetched through GetData
    done, collected, final = probe_run(tmp_path / "out", series, DICOM_HOST_MODELS_INLINE_MAX="64")
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = {s["id"]: s["verdict"] for s in collected["scenarios"]}
    assert verdicts == {s: "not applicable" if s in AFTER_HAND_OVER else "pass" for s in ALL_SCENARIOS}
    assert final == {s: "pass" for s in ALL_SCENARIOS}
    messages = {s["id"]: "\n".join(s["messages"]) for s in collected["scenarios"]}
    assert "3 models valid against NativeDICOM.rng" in messages["models-native"]
    assert messages["models-native"].count("1 bulk data objects read, 1 of a size the model claims") == 3
    assert "1 models valid against AbstractImage.rng" in messages["models-abstract"]
    assert "3 bulk data objects read, 3 of a size the model claims" in messages["models-abstract"]
    # the illegal IDLE -> CANCELED was answered, recorded as a protocol warning, and the run still ended well
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert any(w.get("operation") == "NotifyStateChanged" and "IDLE -> CANCELED is not a transition" in w["message"]
               for w in manifest["warnings"]), manifest["warnings"]
    assert manifest["outcome"]["result"] == "completed"


def test_lenient_host_fails_the_refusal_scenarios(tmp_path, series):
    """Lenient: GetOutputLocation, GetData and the model calls before the task answer nil/empty instead of
    a fault. At COMPLETED only NotifyDataAvailable is out of state, and its lenient FALSE is a refusal."""
    done, collected, final = probe_run(tmp_path / "out", series, DICOM_HOST_LENIENT="1")
    assert done.returncode == 0, done.stderr[-2000:]
    failing = {"refused-not-started", "refused-idle"}
    assert {i for i, v in final.items() if v == "fail"} == failing
    for scenario in collected["scenarios"]:
        if scenario["id"] in failing:
            assert scenario["verdict"] == "fail" and "shall only be called" in scenario["rule"]
            assert "refused" in scenario["expected"] and "answered" in scenario["observed"], scenario
    assert collected["conformant"] is True  # refusing with a fault is what this host recommends, not a must


def test_http_only_host(tmp_path, series):
    """A host that offers no file: locations: that scenario is not applicable, the rest still passes."""
    done, _, final = probe_run(tmp_path / "out", series, DICOM_HOST_OUTPUT_PROTOCOLS="http")
    assert done.returncode == 0, done.stderr[-2000:]
    assert final == {s: "not applicable" if s == "output-location-file" else "pass" for s in ALL_SCENARIOS}
