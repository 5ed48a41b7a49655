"""The three forms of a conformance report: human-readable text, JUnit XML (one test case per scenario,
for CI systems) and JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable
from xml.etree import ElementTree as ET

from hosting_service.conformance.verdicts import Result, Verdict, failed_required

FORMATS = ("text", "junit", "json")
FILE_NAMES = {"text": "conformance.txt", "junit": "conformance-junit.xml", "json": "conformance.json"}


def text(suite: str, results: list[Result]) -> str:
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    lines = [f"PS3.19 conformance: {suite}", ""]
    for r in results:
        lines.append(f"[{r.verdict.value.upper()}] {r.id}: {r.title}  ({r.clause}{'' if r.required else '; optional'})")
        if r.verdict is Verdict.FAIL:
            lines.append(f"    rule:     {r.rule}")
            lines.append(f"    expected: {r.expected}")
        if r.observed:
            lines.append(f"    observed: {r.observed}")
        if r.verdict is not Verdict.PASS:
            lines.extend(f"      | {m}" for m in r.messages[-30:])
    lines.append("")
    lines.append(f"{counts[Verdict.PASS]} passed, {counts[Verdict.FAIL]} failed, "
                 f"{counts[Verdict.NOT_APPLICABLE]} not applicable; "
                 f"{'NOT CONFORMANT' if failed_required(results) else 'conformant'} in the scenarios run")
    return "\n".join(lines) + "\n"


def junit(suite: str, results: list[Result]) -> str:
    root = ET.Element("testsuites")
    suite_element = ET.SubElement(root, "testsuite", {
        "name": suite, "tests": str(len(results)),
        "failures": str(sum(r.verdict is Verdict.FAIL for r in results)),
        "skipped": str(sum(r.verdict is Verdict.NOT_APPLICABLE for r in results)),
        "errors": "0", "time": f"{sum(r.seconds for r in results):.3f}",
    })
    for r in results:
        case = ET.SubElement(suite_element, "testcase", {
            "classname": suite, "name": r.id, "time": f"{r.seconds:.3f}"})
        ET.SubElement(case, "properties").extend([
            ET.Element("property", {"name": "clause", "value": r.clause}),
            ET.Element("property", {"name": "required", "value": str(r.required).lower()}),
        ])
        if r.verdict is Verdict.FAIL:
            failure = ET.SubElement(case, "failure", {"message": f"{r.rule}: expected {r.expected}; observed {r.observed}"})
            failure.text = "\n".join(r.messages)
        elif r.verdict is Verdict.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", {"message": r.observed})
        if r.messages:
            ET.SubElement(case, "system-out").text = "\n".join(r.messages)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def as_json(suite: str, results: list[Result]) -> str:
    return json.dumps({
        "suite": suite,
        "conformant": not failed_required(results),
        "counts": {v.value: sum(r.verdict is v for r in results) for v in Verdict},
        "scenarios": [r.to_json() for r in results],
    }, indent=2) + "\n"


WRITERS = {"text": text, "junit": junit, "json": as_json}


def render(suite: str, results: list[Result]) -> dict[str, str]:
    """Every form of the report, by format name."""
    return {name: writer(suite, results) for name, writer in WRITERS.items()}


def write_all(folder: Path, suite: str, results: list[Result], formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write the reports to ``folder`` under :data:`FILE_NAMES`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        path = folder / FILE_NAMES[name]
        path.write_text(WRITERS[name](suite, results), encoding="utf-8")
        written.append(path)
    return written
