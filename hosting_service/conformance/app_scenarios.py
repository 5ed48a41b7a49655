"""The scenarios of ``dicom-host conformance app``, each citing the clause it tests.

Each is a function of a :class:`~.app_suite.Session` (the application is launched before it runs, and
killed after). The expectations come from :mod:`hosting_service.states`: what the host may request from
each state (Table 7.2-2), and which notifications the table allows (judged for every scenario by the
scripted host, along with the §8 preconditions of the application's calls).
"""
from __future__ import annotations

from client import ApplicationCallError
from hosting_service.conformance import model_checks
from hosting_service.conformance.app_suite import TABLE, Session
from hosting_service.conformance.scripted_host import Faults
from hosting_service.conformance.verdicts import Scenario, Violation
from hosting_service.located import UnreadableObject, read_located
from hosting_service.models import NATIVE_DICOM_MODEL
from hosting_service.states import State, host_may_request

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"


def startup(s: Session) -> None:
    s.started()
    try:
        state = s.call("GetState", s.app.get_state)
    except ApplicationCallError as exc:
        raise Violation("PS3.19 §7.1, §8.1.1", f"GetState answered at {s.application_url}", str(exc)) from None
    if state != State.IDLE:
        raise Violation("PS3.19 §8.1.1", "GetState agrees with the last notification (IDLE)", f"GetState = {state}")


def _refused_everywhere_else(s: Session) -> None:
    """Every state the host may not request from the current one answers FALSE (the state does not change)."""
    current = s.host.state
    for state in State:
        if state != current and state not in host_may_request(current):
            s.request(state)


def set_state_table(s: Session) -> None:
    """Every host-requested cell of Table 7.2-2 (EXIT from IDLE is the ``exit`` scenario), and every
    request the table does not allow, from IDLE, INPROGRESS, SUSPENDED and COMPLETED."""
    s.started()
    for state in (State.SUSPENDED, State.COMPLETED, State.CANCELED):
        s.request(state)
    s.move(State.INPROGRESS)  # the inputs are not announced yet: the task waits for them
    _refused_everywhere_else(s)
    s.move(State.SUSPENDED)
    _refused_everywhere_else(s)
    s.move(State.INPROGRESS)  # resume
    s.move(State.SUSPENDED)
    s.move(State.CANCELED)  # SUSPENDED -> CANCELED
    s.expect_state(State.IDLE, f"{TABLE}: CANCELED -> IDLE once the application has released its resources")
    s.move(State.INPROGRESS)
    s.move(State.CANCELED)  # INPROGRESS -> CANCELED
    s.expect_state(State.IDLE, f"{TABLE}: CANCELED -> IDLE once the application has released its resources")
    s.move(State.INPROGRESS)
    s.offer()
    s.expect_state(State.COMPLETED, f"{TABLE}: INPROGRESS -> COMPLETED when the task is done", s.options.task_timeout)
    s.settle()
    _refused_everywhere_else(s)
    s.finish()


def full_task(s: Session) -> None:
    """A whole task; the outputs written where the host said, each once, announced, and nothing after IDLE."""
    s.started()
    s.run_task()
    record = s.host.record
    if not record.locations:
        raise Violation("PS3.19 §8.2.3", "the application writes its outputs to a location from GetOutputLocation",
                        "it never called GetOutputLocation")
    written = [p for loc in record.locations for p in loc.folder.iterdir() if p.is_file()]
    if not written:
        raise Violation("PS3.19 §8.2.3", "the outputs written at the output location the host handed out",
                        "nothing there: " + ", ".join(loc.uri for loc in record.locations))
    for location in record.locations:
        names = [p.name for p in location.folder.iterdir()]
        if not location.uri.endswith("/") and names not in ([], ["output"]):
            raise Violation("PS3.19 §8.2.3", f"an output location that names a file ({location.uri}) is that file",
                            f"written there: {', '.join(names)}")
    if not any(last for _, last in record.announcements):
        raise Violation("PS3.19 §8.3.1", "NotifyDataAvailable(lastData=TRUE) before COMPLETED",
                        f"{len(record.announcements)} announcements, none with lastData")
    s.finish()
    s.quiet_after_idle()


def data_exchange(s: Session) -> None:
    """The announced outputs are what was written, and GetData finds every one (§8.3.1, §8.3.2, §8.3.6)."""
    s.started()
    s.run_task()
    uuids = s.host.record.announced_uuids()
    written = [p for loc in s.host.record.locations for p in loc.folder.iterdir() if p.is_file()]
    if len(uuids) != len(written):
        raise Violation("PS3.19 §8.3.1", "one announced descriptor for each object written",
                        f"{len(uuids)} announced, {len(written)} written")
    try:
        locators = s.fetch_outputs((EXPLICIT_VR_LE,))
    except ApplicationCallError as exc:
        raise Violation("PS3.19 §8.3.2", "GetData answers for the announced objects", str(exc)) from None
    sources = sorted((loc.Source or "").lower() for loc in locators)
    if sources != sorted(u.lower() for u in uuids):
        raise Violation("PS3.19 §8.3.2", "one ObjectLocator per requested UUID, its Source that UUID",
                        f"requested {len(uuids)}, locators for {sources}")
    for loc in locators:
        if loc.TransferSyntax and loc.TransferSyntax != EXPLICIT_VR_LE:
            raise Violation("PS3.19 §8.3.2", f"a TransferSyntax from the acceptable list [{EXPLICIT_VR_LE}]",
                            f"{loc.TransferSyntax} for {loc.Source}")
        try:
            read_located(loc.URI or "", loc.Offset or 0, loc.Length or 0)  # all of Length, or it raises
        except UnreadableObject as exc:
            raise Violation("PS3.19 §8.3.2, §9.5", "the locator's URI readable at Offset/Length", str(exc)) from None
    try:
        s.call("ReleaseData", s.app.release_data, [loc.Locator for loc in locators if loc.Locator])
    except ApplicationCallError as exc:
        raise Violation("PS3.19 §8.3.6", "ReleaseData answered", str(exc)) from None
    s.back_to_idle()


def models(s: Session) -> None:
    """At COMPLETED the host asks for the announced outputs as Native DICOM Models (§8.3.3-§8.3.5, §8.3.7)
    and checks them (:mod:`.model_checks`); "not applicable" when the application claims none."""
    s.started()
    s.run_task()
    model_checks.check_models(s.app, s.host.record.announced_uuids(), NATIVE_DICOM_MODEL, s.note,
                              s.options.call_timeout)
    s.back_to_idle()


def models_released(s: Session) -> None:
    """QueryModel on released models answers none of their nodes (the standard leaves the answer open)."""
    s.started()
    s.run_task()
    released = model_checks.get_models(s.app, s.host.record.announced_uuids(), NATIVE_DICOM_MODEL, s.note)
    try:
        s.call("ReleaseModels", s.app.release_models, released)
    except ApplicationCallError as exc:
        raise Violation("PS3.19 §8.3.7", "ReleaseModels answered", str(exc)) from None
    model_checks.check_released(s.app, released, s.note, "released models")
    s.back_to_idle()


def cancel(s: Session) -> None:
    """CANCELED mid-task: the application notifies CANCELED, then IDLE, and writes nothing after."""
    s.started()
    s.move(State.INPROGRESS)
    s.offer(last=False)
    s.move(State.CANCELED)
    s.expect_state(State.IDLE, f"{TABLE}: CANCELED -> IDLE once the application has released its resources")
    s.quiet_after_idle()


def suspend_resume(s: Session) -> None:
    """SUSPENDED holds the task; INPROGRESS resumes it to COMPLETED."""
    s.started()
    s.move(State.INPROGRESS)
    s.move(State.SUSPENDED)
    s.move(State.INPROGRESS)
    s.offer()
    s.expect_state(State.COMPLETED, f"{TABLE}: a resumed task goes on to COMPLETED", s.options.task_timeout)
    s.finish()


def exit_from_idle(s: Session) -> None:
    """IDLE -> EXIT: notified, and the process really ends."""
    s.started()
    s.move(State.EXIT)
    grace = s.options.state_timeout
    if s.process is None or s.process.wait(grace) is None:
        raise Violation(f"{TABLE}: IDLE -> EXIT", f"the process ends within {grace:g} s of EXIT", "it is still running")


def _ends_task_cleanly(s: Session, trouble: str) -> None:
    s.started()
    s.move(State.INPROGRESS)
    s.offer()
    rule = f"{TABLE}, §7.2: after {trouble} the application ends the task (COMPLETED, or FATALERROR/CANCELED then IDLE)"

    def task_ended() -> bool:
        states = [n.state for n in s.host.record.notifications[s.cursor:]]
        return State.COMPLETED in states or (State.CANCELED in states and State.IDLE in states)

    if not s.wait(task_ended, s.options.task_timeout):
        seen = [str(n.state) for n in s.host.record.notifications[s.cursor:]]
        raise Violation(rule, f"COMPLETED, or CANCELED then IDLE, within {s.options.task_timeout:g} s",
                        f"notifications: {', '.join(seen) or 'none'}; {s.liveness()}")
    if State.COMPLETED in [n.state for n in s.host.record.notifications[s.cursor:]]:
        s.expect_state(State.COMPLETED, rule)
        s.finish()
    try:
        s.call("GetState", s.app.get_state)
    except ApplicationCallError as exc:
        raise Violation(rule, "the application still answers afterwards", str(exc)) from None


def getdata_fault(s: Session) -> None:
    _ends_task_cleanly(s, "a SOAP fault from GetData")


def nil_output_location(s: Session) -> None:
    _ends_task_cleanly(s, "a nil GetOutputLocation answer")


def slow_host(s: Session) -> None:
    _ends_task_cleanly(s, "slow answers from the host")


def launch_flags(s: Session) -> None:
    """XIP compares the launch flags ignoring case and passes them as ``--flag=value`` too."""
    startup(s)


_FILE = "PS3.19 §8.2.3, §8.3.1"
SCENARIOS: list[Scenario] = [
    Scenario("startup", "first IDLE in time, ApplicationService at the given URL, GetState agrees",
             "PS3.19 §7.1, §8.1.1", startup),
    Scenario("set-state-table", "SetState answers and notifications match Table 7.2-2 from every reachable state",
             "PS3.19 Table 7.2-2, §8.1.2, §8.2.4", set_state_table),
    Scenario("task-file-folder", "a full task, file: output location as a folder", _FILE, full_task,
             options={"protocol": "file"}),
    Scenario("task-file-file", "a full task, file: output location naming a file", _FILE, full_task,
             options={"protocol": "file", "file_semantics": True}),
    Scenario("task-http-folder", "a full task, http: output location as a folder (write-once PUT/POST)",
             f"{_FILE}, §8.2.3 Note 1", full_task, options={"protocol": "http"}),
    Scenario("task-http-file", "a full task, http: output location naming a file (write-once PUT/POST)",
             f"{_FILE}, §8.2.3 Note 1", full_task, options={"protocol": "http", "file_semantics": True}),
    Scenario("data-exchange", "announced outputs match what was written; GetData locators, transfer syntax, ReleaseData",
             "PS3.19 §8.3.1, §8.3.2, §8.3.6, §9.5", data_exchange, options={"protocol": "file"}),
    Scenario("models", "outputs as Native DICOM Models: schema-valid, QueryModel/QueryInfoSet order and node types, "
             "bulk data, ReleaseModels", "PS3.19 §8.3.3-§8.3.5, §8.3.7, Annex A", models, options={"protocol": "file"}),
    Scenario("models-released", "a query on released models answers none of their nodes", "PS3.19 §8.3.7",
             models_released, required=False, options={"protocol": "file"}),
    Scenario("cancel", "CANCELED mid-task, then IDLE, nothing written after", "PS3.19 Table 7.2-2, §8.2.3", cancel),
    Scenario("suspend-resume", "SUSPENDED and resumed to COMPLETED", "PS3.19 Table 7.2-2", suspend_resume),
    Scenario("exit", "EXIT from IDLE ends the process", "PS3.19 Table 7.2-2, §7.2", exit_from_idle),
    Scenario("getdata-fault", "a GetData fault ends the task cleanly", "PS3.19 §7.2, Table 7.2-2", getdata_fault,
             options={"faults": Faults(get_data_fault=True)}),
    Scenario("nil-output-location", "a nil GetOutputLocation ends the task cleanly", "PS3.19 §7.2, §8.2.3",
             nil_output_location, options={"faults": Faults(nil_output_location=True)}),
    Scenario("slow-host", "a host slow to answer (2 s) does not hang or crash the application", "PS3.19 §7.2",
             slow_host, options={"faults": Faults(slow_seconds=2.0)}),
    Scenario("launch-flags", "launch flags in another case and in --flag=value form (XIP)", "PS3.19 §7.1",
             launch_flags, options={"launch": {"flags": ("--HOSTURL", "--applicationurl"), "equals": True}}),
]
"""Every application scenario, in report order."""

BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
