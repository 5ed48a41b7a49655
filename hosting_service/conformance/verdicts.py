"""Scenarios, their verdicts, and how a scenario says what went wrong.

A scenario is data (:class:`Scenario`): an identifier, a title, the clause of PS3.19 it tests, whether it is
required, and the function that runs it. The function raises :class:`Violation` (naming the rule) when the
peer breaks it and :class:`NotApplicable` when the peer offers nothing to test; returning normally is a pass.
Anything else it raises is an error of the run, reported as a failure with the exception.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not applicable"

    def __str__(self) -> str:
        return self.value


class Violation(Exception):
    """The peer broke ``rule``: ``expected`` is what the rule demands, ``observed`` what happened."""

    def __init__(self, rule: str, expected: str, observed: str):
        super().__init__(f"{rule}: expected {expected}; observed {observed}")
        self.rule = rule
        self.expected = expected
        self.observed = observed


class NotApplicable(Exception):
    """The peer claims nothing this scenario could test (e.g. no models); the message says why."""


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    clause: str
    run: Callable[..., None]
    required: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    """How the scenario's setting differs from the default (e.g. the scripted host's protocol or faults)."""


@dataclass
class Result:
    id: str
    title: str
    clause: str
    required: bool
    verdict: Verdict
    expected: str = ""
    observed: str = ""
    rule: str = ""
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)
    """The wire exchanges (or steps) involved, one line each, in order."""
    timings: dict[str, float] = field(default_factory=dict)
    """Where the scenario's time went (``application``, ``pauses``), where the runner measures it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "clause": self.clause, "required": self.required,
            "verdict": self.verdict.value, "rule": self.rule, "expected": self.expected,
            "observed": self.observed, "seconds": round(self.seconds, 3), "timings": self.timings,
            "messages": self.messages,
        }


def judged(scenario: Scenario, outcome: Optional[BaseException], seconds: float, messages: list[str]) -> Result:
    """The :class:`Result` of ``scenario`` given what its function raised (``None``: it returned)."""
    result = Result(scenario.id, scenario.title, scenario.clause, scenario.required, Verdict.PASS,
                    seconds=seconds, messages=messages)
    if isinstance(outcome, Violation):
        result.verdict = Verdict.FAIL
        result.rule, result.expected, result.observed = outcome.rule, outcome.expected, outcome.observed
    elif isinstance(outcome, NotApplicable):
        result.verdict = Verdict.NOT_APPLICABLE
        result.observed = str(outcome)
    elif outcome is not None:
        result.verdict = Verdict.FAIL
        result.rule = "the scenario could not run to its end"
        result.observed = f"{type(outcome).__name__}: {outcome}"
    return result


def execute(scenario: Scenario, messages: list[str], *args: Any) -> Result:
    """Run ``scenario.run(*args)`` here and judge it; ``messages`` is the list the scenario writes its steps
    to (the result gets the lines added while it ran)."""
    start, first = time.monotonic(), len(messages)
    outcome: Optional[BaseException] = None
    try:
        scenario.run(*args)
    except Exception as exc:
        outcome = exc
    return judged(scenario, outcome, time.monotonic() - start, messages[first:])


def failed_required(results: list[Result]) -> bool:
    """Whether a required scenario failed (the exit status of both commands is non-zero then)."""
    return any(r.required and r.verdict is Verdict.FAIL for r in results)
