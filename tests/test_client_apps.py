"""HostedApplication subclasses as real subprocesses, driven through ApplicationClient as a Host drives
them, with the real Hosting System server (``host_server``) answering their calls: the SetState answers
of Table 7.2-2 for every (current, requested) pair, the task protocol (inputs fetched, outputs written,
announced and served with GetData), failure and cancellation, the launch contract, and each misbehaviour
of ``client.examples.misbehaving_app``."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import zeep
from lxml import etree

from client import ApplicationCallError, ApplicationClient, read_located
from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import AvailableData, Rectangle, iter_descriptors
from hosting_service.states import State, host_may_request

REPO = Path(__file__).resolve().parent.parent
APP_PATH = "ApplicationService-20100825"
CRASH_STATUS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LaunchedApp:
    """A hosted application process bound to a host instance, and the Host-side view of it."""

    process: subprocess.Popen
    instance: dict
    admin: AdminClient
    log_path: Path
    client: ApplicationClient
    reported: list[str] = field(default_factory=list)
    statuses: list[dict] = field(default_factory=list)
    _after: int = 0

    @property
    def id(self) -> str:
        return self.instance["id"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_reported(self, state: State, timeout: float = 15) -> None:
        """Until the application has notified ``state`` to the host (collecting states and statuses): it is
        the last state reported, or one reported during this wait (a quick application may move on at once)."""
        deadline = time.monotonic() + timeout
        since = len(self.reported)
        while state.value not in self.reported[-1:] and state.value not in self.reported[since:]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {state} notification; reported {self.reported}; log:\n{self.log()}"
            events, self._after = self.admin.events(self.id, after=self._after, wait=min(remaining, 5),
                                                    kinds=["state", "status"])
            for event in events:
                if event["kind"] == "state":
                    self.reported.append(event["data"]["to"])
                else:
                    self.statuses.append({**event["data"], "after": list(self.reported)})

    def move(self, state: State) -> None:
        """SetState(state) must answer TRUE and the application must then notify ``state``."""
        assert self.client.set_state(state) is True
        self.wait_reported(state)

    def offer(self, folder: Path) -> AvailableData:
        return self.admin.offer_inputs(self.id, [folder])["availableData"]

    def wait_exit(self, timeout: float = 10) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def launch(host_server, tmp_path):
    """``launch(module, *args)``: start ``python -m client.examples.<module>`` (or the script at ``module``
    if it is a Path) for a new instance and wait for its first IDLE (unless ``wait_idle=False``)."""
    launched: list[LaunchedApp] = []

    def start(module: "str | Path" = "misbehaving_app", *args: str, wait_idle: bool = True,
              timeout: float = 10.0) -> LaunchedApp:
        url = f"http://127.0.0.1:{free_port()}/app{len(launched)}/{APP_PATH}"
        instance = host_server.admin.create_instance(application_url=url)
        log_path = tmp_path / f"app{len(launched)}.log"
        program = [str(module)] if isinstance(module, Path) else ["-m", f"client.examples.{module}"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, *program, "--hostURL", instance["hostURL"], "--applicationURL", url, *args],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            )
        app = LaunchedApp(process, instance, host_server.admin, log_path, ApplicationClient(url, timeout=timeout))
        launched.append(app)
        if wait_idle:
            app.wait_reported(State.IDLE)
        return app

    yield start
    for app in launched:
        if app.process.poll() is None:
            os.killpg(app.process.pid, signal.SIGKILL)
            app.process.wait()


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ct")
    write_sample_series(folder, slices=3, size=16)
    return folder


def sha256_of_files(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.dcm")}


def summary_hashes(text: str) -> set[str]:
    return {line.split()[3] for line in text.splitlines()}


def output_uuids(app: LaunchedApp) -> list[str]:
    announcements, last_data = app.admin.announced_outputs(app.id)
    assert last_data is True
    return [d.DescriptorUuid for data in announcements for d, *_ in iter_descriptors(data)]


# --- Table 7.2-2 ---------------------------------------------------------------------------------------

def refusals(app: LaunchedApp, current: State, checked: set) -> None:
    """Every SetState the walk does not take from ``current``: TRUE for ``current`` itself (ignored),
    FALSE for targets the table does not let the host request; the application stays where it is."""
    for requested in State:
        if requested != current and requested in host_may_request(current):
            continue  # a legal move: the walks take each one
        assert app.client.set_state(requested) is (requested == current), (current, requested)
        checked.add((current, requested))
    assert app.client.get_state() is current


def test_set_state_answers_follow_table_7_2_2(launch, ct_series):
    checked: set[tuple[State, State]] = set()

    def take(app: LaunchedApp, source: State, target: State) -> None:
        app.move(target)
        checked.add((source, target))

    walk = launch()
    refusals(walk, State.IDLE, checked)
    take(walk, State.IDLE, State.INPROGRESS)
    refusals(walk, State.INPROGRESS, checked)
    take(walk, State.INPROGRESS, State.SUSPENDED)
    refusals(walk, State.SUSPENDED, checked)
    assert walk.client.notify_data_available(walk.offer(ct_series), True) is False, "no inputs while SUSPENDED"
    take(walk, State.SUSPENDED, State.INPROGRESS)
    assert walk.client.notify_data_available(walk.offer(ct_series), True) is True
    walk.wait_reported(State.COMPLETED)
    refusals(walk, State.COMPLETED, checked)
    take(walk, State.COMPLETED, State.IDLE)
    take(walk, State.IDLE, State.EXIT)
    assert walk.wait_exit() == 0

    stuck = launch("misbehaving_app", "--process-seconds", "60", "--cancel-grace", "60")
    stuck.move(State.INPROGRESS)
    assert stuck.client.notify_data_available(AvailableData(), True) is True
    take(stuck, State.INPROGRESS, State.SUSPENDED)
    take(stuck, State.SUSPENDED, State.CANCELED)  # stays CANCELED while process() ignores the cancel
    refusals(stuck, State.CANCELED, checked)

    cancel = launch("misbehaving_app", "--process-seconds", "0.5")
    cancel.move(State.INPROGRESS)
    assert cancel.client.notify_data_available(AvailableData(), True) is True
    take(cancel, State.INPROGRESS, State.CANCELED)
    cancel.wait_reported(State.IDLE)  # by itself, once process() has returned

    every_pair = {(c, r) for c in State if c != State.EXIT for r in State}
    assert checked == every_pair
    assert walk.reported == ["IDLE", "INPROGRESS", "SUSPENDED", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    assert cancel.reported == ["IDLE", "INPROGRESS", "CANCELED", "IDLE"]


# --- §8.1.2: the latest request wins --------------------------------------------------------------------

HELD_APP = '''
import sys, threading, time
from pathlib import Path
from client.examples.misbehaving_app import MisbehavingApp
from hosting_service.states import State

class HeldApp(MisbehavingApp):
    """Its state-machine thread holds after entering --hold-at until the --release file exists, as it does
    while blocked in a call to the host: the host's SetState requests meanwhile wait for that thread."""

    @classmethod
    def add_arguments(cls, parser):
        super().add_arguments(parser)
        parser.add_argument("--hold-at", type=State, required=True)
        parser.add_argument("--release", type=Path, required=True)

    def entered(self, state):
        super().entered(state)
        deadline = time.monotonic() + 30
        if state == self.options.hold_at and threading.current_thread().name == "state-machine":
            while not self.options.release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)

sys.exit(HeldApp.main())
'''


def launch_held(launch, tmp_path: Path, held_at: State) -> tuple[LaunchedApp, Path]:
    """An application whose state-machine thread holds once it has notified ``held_at`` (IDLE: the IDLE
    after a canceled task), and the file that releases it."""
    script, release = tmp_path / "held_app.py", tmp_path / "release"
    script.write_text(HELD_APP)
    app = launch(script, "--hold-at", held_at.value, "--release", str(release))
    app.move(State.INPROGRESS)
    if held_at == State.IDLE:
        assert app.client.set_state(State.CANCELED) is True
        app.wait_reported(State.IDLE)
        assert app.reported == ["IDLE", "INPROGRESS", "CANCELED", "IDLE"]
    return app, release


@pytest.mark.parametrize("held_at, requests, after", [
    (State.IDLE, [State.INPROGRESS, State.EXIT], [State.EXIT]),
    (State.INPROGRESS, [State.SUSPENDED, State.CANCELED], [State.CANCELED, State.IDLE]),
    (State.INPROGRESS, [State.CANCELED, State.SUSPENDED], [State.SUSPENDED]),
])
def test_latest_set_state_wins_over_one_not_carried_out_yet(launch, tmp_path, held_at, requests, after):
    """Two requests, each legal from the current state, before the first is carried out: both TRUE, and
    the application abandons the first and carries out the latest (not the first, dropping the latest)."""
    app, release = launch_held(launch, tmp_path, held_at)
    before = len(app.reported)
    for state in requests:
        assert app.client.set_state(state) is True, state
    release.touch()
    app.wait_reported(after[-1])
    assert app.reported[before:] == [s.value for s in after]
    assert app.admin.instance(app.id)["state"] == after[-1].value
    if after[-1] == State.EXIT:
        assert app.wait_exit() == 0
    else:
        assert app.client.get_state() is after[-1]


def test_request_for_the_current_state_abandons_the_pending_change(launch, tmp_path):
    app, release = launch_held(launch, tmp_path, State.INPROGRESS)
    assert app.client.set_state(State.SUSPENDED) is True
    assert app.client.set_state(State.EXIT) is False, "illegal from INPROGRESS; SUSPENDED stays pending"
    assert app.client.set_state(State.INPROGRESS) is True, "the current state: SUSPENDED is abandoned"
    assert app.client.notify_data_available(AvailableData(), True) is True
    release.touch()
    app.wait_reported(State.COMPLETED)  # SUSPENDED would hold the task
    assert app.reported == ["IDLE", "INPROGRESS", "COMPLETED"]


# --- one task, seen from the Host ----------------------------------------------------------------------

def test_task_inputs_fetched_outputs_served(launch, ct_series):
    app = launch()
    app.move(State.INPROGRESS)
    assert app.client.notify_data_available(app.offer(ct_series), True) is True
    assert app.client.notify_data_available(AvailableData(), True) is False, "nothing after lastData=TRUE"
    app.wait_reported(State.COMPLETED)

    uuids = output_uuids(app)
    assert len(uuids) == 1
    (locator,) = app.client.get_data(uuids, ["1.2.840.10008.1.2.1"], True)
    assert (locator.Source, locator.Offset) == (uuids[0], 0)
    assert locator.URI.startswith("file:///")  # file: is the kit's first preference
    summary = read_located(locator)
    assert locator.Length == len(summary)
    assert summary_hashes(summary.decode()) == sha256_of_files(ct_series), "the inputs arrived byte for byte"
    assert app.client.release_data([locator.Locator]) is None
    with pytest.raises(ApplicationCallError, match="GetData: .*not announced by this application: 0000-bogus"):
        app.client.get_data(["0000-bogus"])

    assert app.client.get_as_models(uuids, "1.2.840.10008.7.1.1").FailedSourceObjects == uuids  # not DICOM
    with pytest.raises(ApplicationCallError, match="QueryModel: no such model of this application"):
        app.client.query_model(["m-1"], ["/a"])
    with pytest.raises(ApplicationCallError, match="QueryInfoSet: no such model of this application"):
        app.client.query_info_set(["m-1"], ["/a"])
    assert app.client.release_models(["m-1"]) is None
    assert app.client.bring_to_front(Rectangle(Height=10, Width=10, RefPointX=0, RefPointY=0)) is True
    assert app.client.bring_to_front(None) is True

    app.move(State.IDLE)
    with pytest.raises(ApplicationCallError, match="GetData: this application has announced no outputs"):
        app.client.get_data(uuids)
    app.move(State.EXIT)
    assert app.wait_exit() == 0


def test_processing_failure_is_fatalerror_then_canceled_then_idle(launch):
    app = launch("misbehaving_app", "--fail")
    app.move(State.INPROGRESS)
    app.client.notify_data_available(AvailableData(), True)
    app.wait_reported(State.IDLE)
    assert app.reported == ["IDLE", "INPROGRESS", "CANCELED", "IDLE"]
    (status,) = app.statuses
    assert status["StatusType"] == "FATALERROR"
    assert "failing on purpose" in status["CodeMeaning"]
    assert status["after"] == ["IDLE", "INPROGRESS"], "the status comes before CANCELED"


def test_application_serves_its_wsdl_and_schemas(launch):
    app = launch()
    url = app.client.url
    wsdl_text = requests.get(url + "?wsdl", timeout=5)
    assert wsdl_text.status_code == 200
    address = etree.fromstring(wsdl_text.content).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == url
    base = url.rsplit("/", 1)[0]
    for name in ("ApplicationService-20100825.xsd", "Types.xsd", "ArrayOfString.xsd", "XPathNodeType.xsd"):
        assert requests.get(f"{base}/{name}", timeout=5).content.startswith(b"<?xml")
    # a JAX-WS-style peer: a proxy built from the served WSDL, calling the address it holds
    proxy = zeep.Client(url + "?wsdl")
    assert proxy.service.GetState() == "IDLE"
    assert requests.get(base + "/elsewhere", timeout=5).status_code == 404


# --- the launch contract -------------------------------------------------------------------------------

def run_app(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client.examples.misbehaving_app", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_launch_flags_in_any_case(host_server):
    url = f"http://127.0.0.1:{free_port()}/x/{APP_PATH}"
    instance = host_server.admin.create_instance(application_url=url)
    process = subprocess.Popen(
        [sys.executable, "-m", "client.examples.misbehaving_app", f"--HOSTURL={instance['hostURL']}",
         "--applicationurl", url, "--exit-unrequested-at", "IDLE"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert process.wait(20) == 0, process.stderr.read()
    assert host_server.admin.instance(instance["id"])["state"] == "EXIT"


@pytest.mark.parametrize("args, message", [
    (["--hostURL", "http://127.0.0.1:9/h"], "--applicationURL"),
    (["--hostURL", "not a url", "--applicationURL", "http://127.0.0.1:9/a"], "not an absolute http: URL"),
    (["--hostURL", "http://127.0.0.1:9/h", "--applicationURL", "http://127.0.0.1:9/a", "--crash-at", "NAPPING"],
     "not a PS3.19 State"),
])
def test_bad_usage_exits_2_with_a_message(args, message):
    done = run_app(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unusable_address_or_unreachable_host_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_app("--hostURL", "http://127.0.0.1:9/h", "--applicationURL", f"http://127.0.0.1:{port}/a")
    assert done.returncode == 1
    assert "cannot serve" in done.stderr and "Traceback" not in done.stderr

    done = run_app("--hostURL", "http://127.0.0.1:9/h", "--applicationURL", f"http://127.0.0.1:{free_port()}/a")
    assert done.returncode == 1
    assert "cannot tell the host" in done.stderr and "Traceback" not in done.stderr


# --- the misbehaviours ---------------------------------------------------------------------------------

def test_crash_at_a_state(launch):
    app = launch("misbehaving_app", "--crash-at", "INPROGRESS")
    try:
        assert app.client.set_state(State.INPROGRESS) is True
    except ApplicationCallError as exc:  # the crash may tear the answer to the SetState that led to it
        assert "SetState" in str(exc)
    assert app.wait_exit() == CRASH_STATUS
    app.wait_reported(State.INPROGRESS)


def test_ignored_request_is_answered_but_never_carried_out(launch):
    app = launch("misbehaving_app", "--ignore-request", "INPROGRESS")
    assert app.client.set_state(State.INPROGRESS) is True
    time.sleep(0.5)
    assert app.client.get_state() is State.IDLE
    assert app.admin.instance(app.id)["state"] == "IDLE"


def test_frozen_application_times_out_the_caller(launch):
    app = launch("misbehaving_app", "--freeze-on-request", "INPROGRESS", timeout=0.5)
    with pytest.raises(ApplicationCallError, match="SetState: no answer"):
        app.client.set_state(State.INPROGRESS)
    with pytest.raises(ApplicationCallError, match="GetState: no answer"):
        app.client.get_state()
    assert app.process.poll() is None


def test_illegal_notification_reaches_the_host(launch):
    app = launch("misbehaving_app", "--illegal-notify", "COMPLETED")
    app.wait_reported(State.COMPLETED)
    events, _ = app.admin.events(app.id, kinds=["state"])
    assert events[-1]["data"] == {"from": "IDLE", "to": "COMPLETED", "legal": False}
    assert app.client.get_state() is State.IDLE, "the application itself stayed IDLE"


def test_self_idle_after_completed_still_serves_outputs(launch):
    app = launch("misbehaving_app", "--self-idle")
    app.move(State.INPROGRESS)
    app.client.notify_data_available(AvailableData(), True)
    app.wait_reported(State.IDLE)
    assert app.reported == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE"]
    uuids = output_uuids(app)
    (locator,) = app.client.get_data(uuids)  # the URI is the host's again: IDLE expired the location
    assert (locator.Source, locator.URI.rsplit("/", 1)[1]) == (uuids[0], "summary.txt")
    assert app.client.set_state(State.IDLE) is True  # the host's own request is still answered
    app.move(State.EXIT)


def test_exit_without_request(launch):
    app = launch("misbehaving_app", "--exit-unrequested-at", "COMPLETED")
    app.move(State.INPROGRESS)
    app.client.notify_data_available(AvailableData(), True)
    app.wait_reported(State.EXIT)
    assert app.wait_exit() == 0
    assert app.reported == ["IDLE", "INPROGRESS", "COMPLETED", "EXIT"]


def test_slow_startup(launch):
    started = time.monotonic()
    app = launch("misbehaving_app", "--startup-delay", "1.5", wait_idle=False)
    app.wait_reported(State.IDLE)
    assert time.monotonic() - started >= 1.5


def test_ctk_style_application_completes_a_task(launch, ct_series):
    """CTK-style requests (HostInterface namespace, xsi:type, integer StatusType, ``<string><Uid>``
    arrays) reach the real host, and ApplicationClient reads CTK-style answers (empty Bodies for void
    operations, unqualified results in the CTK namespace)."""
    app = launch("misbehaving_app", "--ctk")
    assert app.client.get_state() is State.IDLE
    app.move(State.INPROGRESS)
    assert app.client.notify_data_available(app.offer(ct_series), True) is True
    app.wait_reported(State.COMPLETED)
    (locator,) = app.client.get_data(output_uuids(app))
    assert summary_hashes(read_located(locator).decode()) == sha256_of_files(ct_series)
    assert app.client.release_data([locator.Locator]) is None
    app.move(State.IDLE)
    app.move(State.EXIT)
    assert app.wait_exit() == 0


def test_ctk_style_status_reaches_the_host(launch):
    app = launch("misbehaving_app", "--ctk", "--fail")
    app.move(State.INPROGRESS)
    app.client.notify_data_available(AvailableData(), True)
    app.wait_reported(State.IDLE)
    (status,) = app.statuses
    assert status["StatusType"] == "FATALERROR" and "failing on purpose" in status["CodeMeaning"]


def test_mip_app_without_images_fails_cleanly(launch, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    app = launch("mip_app")
    app.move(State.INPROGRESS)
    app.client.notify_data_available(app.offer(tmp_path / "notes"), True)
    app.wait_reported(State.IDLE)
    assert app.reported == ["IDLE", "INPROGRESS", "CANCELED", "IDLE"]
    assert "none of the 1 inputs is a DICOM image" in app.statuses[0]["CodeMeaning"]
