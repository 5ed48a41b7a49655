"""Running the application scenarios: one fresh launch of the application per scenario, under its own
:class:`~.scripted_host.ScriptedHost`, with a hard time budget.

A :class:`Session` is what a scenario function gets: the launched application, the scripted host, a
client of the application's ApplicationService, and the steps every scenario is made of (wait for a
notification, request a state and judge the answer against Table 7.2-2, offer the inputs, fetch the
outputs). Every step is written to the session's messages, which the report shows for failed scenarios.

Scenarios run on worker threads (``jobs`` at a time). When one overruns its budget, its application's
process group is killed, which ends every wait of the scenario; the run goes on with the next.
"""
from __future__ import annotations

import concurrent.futures
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from client import ApplicationCallError, ApplicationClient
from hosting_service.conformance.scripted_host import Faults, ScriptedHost
from hosting_service.conformance.verdicts import Result, Scenario, Verdict, Violation, judged
from hosting_service.dicom.inputs import ScanResult, scan
from hosting_service.model import AvailableData, ObjectLocator
from hosting_service.orchestration.process import AppProcess, LaunchError, application_argv
from hosting_service.ports import free_loopback_port
from hosting_service.states import State, host_may_request, transition

TABLE = "PS3.19 Table 7.2-2"


@dataclass
class AppOptions:
    """How to launch the application and how long to wait for it (seconds)."""

    command: str
    passthrough: list[str] = field(default_factory=list)
    startup_timeout: float = 20.0
    state_timeout: float = 10.0
    task_timeout: float = 30.0
    call_timeout: float = 10.0
    budget: float = 60.0
    """Hard limit on one scenario, launch to end."""
    quiet_seconds: float = 0.5
    """How long the host watches for writes after the application reported IDLE."""
    settle_seconds: float = 0.5
    """How long the host stays at COMPLETED before SetState(IDLE), so that an application moving on by
    itself (XIP's self-IDLE) shows it before the request rather than in a race with it."""


class Session:
    """One launch of the application for one scenario; see the module docstring."""

    def __init__(self, options: AppOptions, inputs: ScanResult, workdir: Path, scenario: Scenario):
        self.options = options
        self.inputs = inputs
        self.messages: list[str] = []
        self.output: list[str] = []
        self.host = ScriptedHost(workdir, inputs.available, inputs.objects, log=self.note,
                                 protocol=scenario.options.get("protocol", "file"),
                                 file_semantics=scenario.options.get("file_semantics", False),
                                 faults=scenario.options.get("faults", Faults()))
        self.application_url = f"http://127.0.0.1:{free_loopback_port()}/conformance/ApplicationService-20100825"
        self.app = ApplicationClient(self.application_url, timeout=options.call_timeout)
        self.process: Optional[AppProcess] = None
        self.cursor = 0
        """Notifications before this index have been consumed by :meth:`expect_state`."""
        self.started_at = time.time()
        self.timings = {"application": 0.0, "pauses": 0.0}
        """Seconds spent waiting for the application (its answers and notifications, its start) and in
        the host's deliberate pauses (watching for late writes or moves); the rest is the tool's own."""

    def note(self, line: str) -> None:
        self.messages.append(f"{time.time() - self.started_at:7.3f}s {line}")

    # --- launch and end ----------------------------------------------------------------------------

    def launch(self, flags: tuple[str, str] = ("--hostURL", "--applicationURL"), equals: bool = False) -> None:
        argv = application_argv(self.options.command, self.host.url, self.application_url, [])
        words = argv[:-4]
        urls = (self.host.url, self.application_url)
        spelled = [f"{f}={u}" for f, u in zip(flags, urls)] if equals else [x for pair in zip(flags, urls) for x in pair]
        argv = [*words, *spelled, *self.options.passthrough]
        self.note("launch: " + " ".join(argv))
        self.process = AppProcess(argv, lambda stream, line: self.output.append(f"{stream}: {line}"))

    def abort(self) -> None:
        """The end of the scenario (its own thread only: it reaps the process)."""
        if self.process is not None and self.process.poll() is None:
            self.note(f"hard abort: {self.process.abort(1.0)}")

    def kill(self) -> None:
        """SIGKILL to the application's process group, from any thread: the scenario's waits then end and
        its thread reaps the process in :meth:`abort`."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def ended(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    # --- waiting for the application --------------------------------------------------------------------

    def wait(self, predicate: Callable[[], bool], timeout: float, pause: bool = False) -> bool:
        """Wait for ``predicate`` (re-checked on every host event, and every 0.1 s for the process's end);
        the time counts as the application's, or as a deliberate ``pause`` of the host."""
        start = time.monotonic()
        deadline = start + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if self.host.wait_for(lambda _: predicate() or self.ended(), min(max(left, 0), 0.1)) and predicate():
                    return True
                if left <= 0 or self.ended():
                    return predicate()
        finally:
            self.timings["pauses" if pause else "application"] += time.monotonic() - start

    def expect_state(self, state: State, rule: str, timeout: Optional[float] = None) -> None:
        """Wait for the next notification of ``state`` (consuming those before it); :class:`Violation` of
        ``rule`` if it does not come."""
        timeout = self.options.state_timeout if timeout is None else timeout
        notifications = self.host.record.notifications

        def arrived() -> bool:
            return any(n.state == state for n in notifications[self.cursor:])

        if not self.wait(arrived, timeout):
            seen = [str(n.state) for n in notifications[self.cursor:]]
            raise Violation(rule, f"NotifyStateChanged({state}) within {timeout:g} s",
                            f"notifications since: {', '.join(seen) or 'none'}; {self.liveness()}")
        self.cursor = next(i for i in range(self.cursor, len(notifications)) if notifications[i].state == state) + 1

    def liveness(self) -> str:
        if self.process is None:
            return "not launched"
        return f"the process ended ({self.process.describe_exit()})" if self.ended() else "the process is running"

    def started(self) -> None:
        """The first IDLE (PS3.19 §7.1)."""
        self.expect_state(State.IDLE, "PS3.19 §7.1: a launched application notifies IDLE when ready",
                          self.options.startup_timeout)

    # --- calling the application ------------------------------------------------------------------------

    def call(self, what: str, function: Callable, *args):
        self.note(f"host -> app {what}")
        start = time.monotonic()
        try:
            answer = function(*args)
        except ApplicationCallError as exc:
            self.note(f"app -> host {what} failed: {exc}")
            raise
        finally:
            self.timings["application"] += time.monotonic() - start
        self.note(f"app -> host {what} -> {_short(answer)}")
        return answer

    def request(self, state: State) -> bool:
        """SetState(state), its answer judged against Table 7.2-2 from the state the host knows."""
        current = self.host.state
        expected = state in host_may_request(current)
        self.host.expect_request(state)
        try:
            answer = self.call(f"SetState({state})", self.app.set_state, state)
        except ApplicationCallError as exc:
            raise Violation("PS3.19 §8.1.2 SetState", "an answer TRUE or FALSE", str(exc)) from None
        if not answer:
            self.host.refused(state)
        if bool(answer) != expected:
            row = transition(current, state)
            raise Violation(row.cite if row else TABLE,
                            f"SetState({state}) from {current} answered {'TRUE' if expected else 'FALSE'}",
                            f"answered {'TRUE' if answer else 'FALSE'}")
        return bool(answer)

    def move(self, state: State) -> None:
        """A state change the table allows: request it and wait for its notification."""
        self.request(state)
        self.expect_state(state, f"{TABLE}: after SetState({state}) answered TRUE the application notifies {state} (§8.2.4)")

    def offer(self, last: bool = True, data: Optional[AvailableData] = None) -> None:
        data = self.inputs.available if data is None else data
        try:
            accepted = self.call(f"NotifyDataAvailable(lastData={last})", self.app.notify_data_available, data, last)
        except ApplicationCallError as exc:
            raise Violation("PS3.19 §8.3.1", "NotifyDataAvailable answered at INPROGRESS", str(exc)) from None
        if not accepted:
            raise Violation("PS3.19 §8.3.1", "the application accepts data at INPROGRESS (TRUE)", "FALSE")

    def run_task(self) -> None:
        """IDLE -> INPROGRESS, the inputs, and COMPLETED."""
        self.move(State.INPROGRESS)
        self.offer()
        self.expect_state(State.COMPLETED, f"{TABLE}: INPROGRESS -> COMPLETED when the task is done",
                          self.options.task_timeout)

    def fetch_outputs(self, transfer_syntaxes: Iterable[str]) -> list[ObjectLocator]:
        """GetData for every object the application announced (what a host does at COMPLETED, §6.3)."""
        uuids = self.host.record.announced_uuids()
        if not uuids:
            return []
        return self.call(f"GetData({len(uuids)} objects)", self.app.get_data, uuids, list(transfer_syntaxes), True)

    def finish(self) -> None:
        """COMPLETED: fetch the outputs, release them, then IDLE (§6.3 steps 6-7)."""
        try:
            locators = self.fetch_outputs(("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))
            if locators:
                self.call("ReleaseData", self.app.release_data, [loc.Locator for loc in locators if loc.Locator])
        except ApplicationCallError:
            pass  # judged by the data exchange scenario, not here
        self.back_to_idle()

    def settle(self) -> None:
        """Stay at COMPLETED for :attr:`AppOptions.settle_seconds` (or until the application notifies)
        before asking anything of it."""
        notifications = self.host.record.notifications
        self.wait(lambda: len(notifications) > self.cursor, self.options.settle_seconds, pause=True)

    def back_to_idle(self) -> None:
        """SetState(IDLE) from COMPLETED, after settling there."""
        self.settle()
        self.move(State.IDLE)

    def check_record(self) -> None:
        """The rules the scripted host saw broken on the wire during the scenario."""
        if self.host.record.violations:
            raise Violation(*self.host.record.violations[0])

    def quiet_after_idle(self) -> None:
        """Nothing written after IDLE (§8.2.3): watch for a while, then look at every location."""
        self.wait(lambda: False, self.options.quiet_seconds, pause=True)
        self.check_record()  # http: writes after IDLE are recorded as they arrive
        for location in self.host.record.locations:
            if location.closed_at is None:
                continue
            changed = sorted(name for name, stamp in location.contents().items()
                             if location.closed_contents.get(name) != stamp)
            if changed:
                raise Violation("PS3.19 §8.2.3", "no writes to an output location after the application reported IDLE",
                                f"written after IDLE at {location.uri}: {', '.join(changed)}")


def _short(answer) -> str:
    text = repr(answer)
    return text if len(text) <= 160 else text[:157] + "..."


def sample_inputs(workdir: Path, folder: Optional[Path]) -> ScanResult:
    """The objects the scripted host offers: ``folder``, or a small generated CT series."""
    if folder is None:
        from hosting_service.dicom.samples import write_sample_series

        folder = workdir / "inputs"
        write_sample_series(folder, slices=4, size=32)
    result = scan([folder])
    if not result.objects:
        raise ValueError(f"{folder}: no input objects found")
    return result


class Launches:
    """The sessions whose application may be running, so that an interrupted run kills them all (their
    process groups are their own: an interrupt of the tool does not reach them by itself)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Session] = set()
        self._stopped = False

    def add(self, session: Session) -> None:
        with self._lock:
            if self._stopped:
                raise KeyboardInterrupt("the run was interrupted")
            self._live.add(session)

    def discard(self, session: Session) -> None:
        with self._lock:
            self._live.discard(session)

    def stop(self) -> None:
        """No launches from now on; every application still running is killed."""
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for session in live:
            session.kill()


def run_scenario(scenario: Scenario, options: AppOptions, inputs: ScanResult, workdir: Path,
                 launches: Optional[Launches] = None) -> Result:
    """One scenario, from launch to the end of its application, within ``options.budget`` seconds."""
    started = time.monotonic()
    scenario_dir = Path(tempfile.mkdtemp(prefix=f"{scenario.id}-", dir=workdir))
    session = Session(options, inputs, scenario_dir, scenario)
    outcome: list[Optional[BaseException]] = []
    launches = launches or Launches()

    def body() -> None:
        try:
            with session.host:
                try:
                    launches.add(session)
                    session.launch(**scenario.options.get("launch", {}))
                    scenario.run(session)
                    session.check_record()
                    outcome.append(None)
                except Violation:  # a message already in flight may show an earlier broken rule
                    session.wait(lambda: bool(session.host.record.violations), options.settle_seconds, pause=True)
                    raise
                finally:
                    session.abort()
                    launches.discard(session)
        except BaseException as exc:  # the verdict, whatever it is
            outcome.append(exc)

    worker = threading.Thread(target=body, name=f"scenario-{scenario.id}", daemon=True)
    worker.start()
    worker.join(options.budget)
    if worker.is_alive():
        session.note(f"the scenario overran its budget of {options.budget:g} s: hard abort of the application")
        session.kill()
        worker.join(options.call_timeout + 2)
        outcome[:] = [Violation("the scenario's hard time budget", f"the scenario ends within {options.budget:g} s",
                                "still running; the application was aborted")]
    if isinstance(outcome[0] if outcome else None, Violation) and session.host.record.violations:
        outcome[0] = Violation(*session.host.record.violations[0])  # the first rule broken, seen on the wire
    if isinstance(outcome[0] if outcome else None, LaunchError):
        outcome[0] = Violation("PS3.19 §7.1 launch", "the application starts", str(outcome[0]))
    result = judged(scenario, outcome[0] if outcome else None, time.monotonic() - started, session.messages)
    result.timings = {name: round(seconds, 3) for name, seconds in session.timings.items()}
    if result.verdict is Verdict.FAIL:
        result.messages = [*result.messages, *(f"app {line}" for line in session.output[-20:])]
    session.app.close()
    return result


def run_suite(scenarios: list[Scenario], options: AppOptions, inputs_folder: Optional[Path] = None,
              jobs: int = 1) -> list[Result]:
    """Every scenario, ``jobs`` at a time; results in the order of ``scenarios``."""
    with tempfile.TemporaryDirectory(prefix="dicom-host-conformance-") as tmp:
        workdir = Path(tmp)
        inputs = sample_inputs(workdir, inputs_folder)
        launches = Launches()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            futures: list[concurrent.futures.Future] = []
            try:
                for scenario in scenarios:
                    futures.append(pool.submit(run_scenario, scenario, options, inputs, workdir, launches))
                return [f.result() for f in futures]
            except BaseException:  # Ctrl-C, SIGTERM: leave no application behind
                for future in futures:
                    future.cancel()
                launches.stop()
                raise
