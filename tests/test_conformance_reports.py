"""The report writers: JUnit XML that a standard parser reads (one test case per scenario, failures and
skips where they belong), JSON, text; and the exit rule (a failed optional scenario is not a failure)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from hosting_service.conformance import reports
from hosting_service.conformance.verdicts import NotApplicable, Scenario, Violation, execute, failed_required


def _raise(exc):
    def run():
        raise exc
    return run


def results():
    scenarios = [
        Scenario("ok", "passes", "PS3.19 §7.1", lambda: None),
        Scenario("bad", "fails", "PS3.19 Table 7.2-2", _raise(Violation("Table 7.2-2 <rule>", "FALSE", "TRUE & more"))),
        Scenario("none", "nothing to test", "PS3.19 §8.3.3", _raise(NotApplicable("no models"))),
        Scenario("soft", "optional", "PS3.19 §8", _raise(Violation("advice", "a", "b")), required=False),
        Scenario("crash", "the scenario itself breaks", "PS3.19 §8", _raise(KeyError("x"))),
    ]
    messages: list[str] = []
    return [execute(s, messages) for s in scenarios]


def test_junit_has_one_test_case_per_scenario():
    root = ET.fromstring(reports.junit("suite", results()))
    suite = root.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["ok", "bad", "none", "soft", "crash"]
    assert suite.get("tests") == "5" and suite.get("failures") == "3" and suite.get("skipped") == "1"
    assert cases["bad"].find("failure").get("message") == "Table 7.2-2 <rule>: expected FALSE; observed TRUE & more"
    assert cases["none"].find("skipped").get("message") == "no models"
    assert cases["ok"].find("failure") is None and cases["ok"].find("skipped") is None
    assert "KeyError" in cases["crash"].find("failure").get("message")


def test_json_and_text():
    data = json.loads(reports.as_json("suite", results()))
    assert [s["verdict"] for s in data["scenarios"]] == ["pass", "fail", "not applicable", "fail", "fail"]
    assert data["conformant"] is False and data["counts"] == {"pass": 1, "fail": 3, "not applicable": 1}
    text = reports.text("suite", results())
    assert "[FAIL] bad: fails  (PS3.19 Table 7.2-2)" in text and "rule:     Table 7.2-2 <rule>" in text


def test_only_required_failures_count():
    everything = results()
    assert failed_required(everything)
    optional_only = [r for r in everything if r.id in ("ok", "none", "soft")]
    assert not failed_required(optional_only)
