"""``dicom-host run`` against applications that misbehave as real CTK and XIP applications do, or fail:
the host stays in control, ends every process it started and says what happened with a distinct exit
status and a one-line reason."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from run_harness import (
    ENV,
    EXIT_APP_FAILED,
    EXIT_CANCELED,
    EXIT_TIMEOUT,
    FAST,
    MISBEHAVING_APP,
    PYTHON,
    REPO,
    Run,
    dicom_host_run,
    process_gone,
    read_events_until,
    run_job,
    start_job,
)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=5, size=16)
    return folder


def summary_lines(run) -> list[list[str]]:
    (entry,) = run.manifest["outputs"]
    return [line.split() for line in (run.output / entry["file"]).read_text().splitlines()]


def check_inputs_arrived_intact(run, series: Path) -> None:
    """The misbehaving app's summary lists the SHA-256 of every input it fetched: they are the files'."""
    expected = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in series.rglob("*.dcm"))
    assert sorted(line[3] for line in summary_lines(run)) == expected


def one_line_reason(run) -> str:
    """The failure's one-line reason; under it only the pointer to app.log and its last lines (indented)."""
    reason, *below = run.stderr.strip().splitlines()
    assert "Traceback" not in reason, run.stderr
    app_log = str(run.output / "app.log")
    assert below and app_log in below[0], f"app.log is not named under the failure:\n{run.stderr}"
    assert all(line.startswith("  | ") for line in below[1:]), run.stderr
    return reason


def test_ctk_style_application(host_server, series, tmp_path):
    """CTK's wire habits (other namespace, xsi:type, integer StatusType, empty Body for void answers)."""
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --ctk", "--input", str(series),
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    check_inputs_arrived_intact(run, series)


def test_jaxws_style_application(host_server, series, tmp_path):
    """An application that knows only hostURL?wsdl (as XIP's JAX-WS apps): its proxy takes the standard WSDL,
    fetches the imported schemas beside it and calls the address the WSDL holds."""
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --jaxws", "--input", str(series),
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    check_inputs_arrived_intact(run, series)


@pytest.mark.parametrize("protocol", ["file:", "http:"])
def test_output_locations_with_file_semantics(host_server, series, tmp_path, protocol):
    """XIP's RECIST writes the location itself: with --output-semantics file each location names one file."""
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --output-protocols {protocol}",
                  "--output-semantics", "file", "--input", str(series), server=host_server.url)
    assert run.returncode == 0, run.describe()
    (location,) = AdminClient(host_server.url).instance(run.manifest["instance"]["id"])["outputLocations"]
    assert location["semantics"] == "file" and not location["uri"].endswith("/")
    check_inputs_arrived_intact(run, series)


def test_inputs_in_several_notifications(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", MISBEHAVING_APP, "--input", str(series), "--batch-size", "2",
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    check_inputs_arrived_intact(run, series)


def test_xip_application_going_idle_by_itself(host_server, series, tmp_path):
    """COMPLETED -> IDLE without being asked: the output location has closed, the outputs are still read."""
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --self-idle --output-protocols http:",
                  "--input", str(series), server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states()[:4] == ["IDLE", "INPROGRESS", "COMPLETED", "IDLE"]
    check_inputs_arrived_intact(run, series)


def test_illegal_notification_is_recorded_not_fatal(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --illegal-notify COMPLETED", "--input",
                  str(series), server=host_server.url)
    # IDLE -> COMPLETED is no transition: the store takes the report as the truth and warns; the host's
    # SetState(INPROGRESS) still works, since the application is really IDLE
    assert run.returncode == 0, run.describe()
    assert any("IDLE -> COMPLETED" in w["message"] for w in run.manifest["warnings"])
    check_inputs_arrived_intact(run, series)


LEAVES_ONCE_ITS_OUTPUTS_ARE_TAKEN = """
import sys
from client.examples.misbehaving_app import MisbehavingApp
from hosting_service.states import State

class LeavesOnceItsOutputsAreTaken(MisbehavingApp):
    def ReleaseData(self, objects=None):
        super().ReleaseData(objects)
        self.enter(State.EXIT)  # nobody asked; notified before this call returns

sys.exit(LeavesOnceItsOutputsAreTaken.main())
"""


POINTS_ITS_OUTPUTS_ELSEWHERE = """
import sys, tempfile, urllib.parse
from pathlib import Path
from client.examples.misbehaving_app import MisbehavingApp
from hosting_service.located import read_located

ELSEWHERE = {elsewhere!r}  # "file": a copy in a folder of its own; "own-endpoint": served by this app; else a URL

class PointsItsOutputsElsewhere(MisbehavingApp):
    copies = {{}}

    def GetData(self, objects=None, acceptableTransferSyntaxes=None, includeBulkData=True):
        locators = super().GetData(objects, acceptableTransferSyntaxes, includeBulkData)
        for n, locator in enumerate(locators):
            data = read_located(locator.URI, locator.Offset, locator.Length)
            if ELSEWHERE == "file":
                copy = Path(tempfile.mkdtemp(prefix="own-outputs-")) / "copy.bin"
                copy.write_bytes(data)
                locator.URI = copy.as_uri()
            elif ELSEWHERE == "own-endpoint":
                self.copies[f"/copy-{{n}}"] = data
                parts = urllib.parse.urlsplit(self.options.applicationURL)
                locator.URI = f"{{parts.scheme}}://{{parts.netloc}}/copy-{{n}}"
            else:
                locator.URI = ELSEWHERE
            locator.Offset = 0
        return locators

    def endpoint_app(self):
        soap = super().endpoint_app()

        def app(environ, start_response):
            copy = self.copies.get(environ["PATH_INFO"]) if environ["REQUEST_METHOD"] == "GET" else None
            if copy is None:
                return soap(environ, start_response)
            start_response("200 OK", [("Content-Length", str(len(copy)))])
            return [copy]

        return app

sys.exit(PointsItsOutputsElsewhere.main())
"""


def elsewhere_app(tmp_path: Path, elsewhere: str) -> str:
    app = tmp_path / "elsewhere.py"
    app.write_text(POINTS_ITS_OUTPUTS_ELSEWHERE.format(elsewhere=elsewhere))
    return f"{PYTHON} {app}"


@pytest.fixture
def third_party(tmp_path):
    """A service on the host's loopback that is not the application's (as the admin API would be)."""
    import http.server
    import threading

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secret)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tokens"
    server.shutdown()
    server.server_close()


def check_refused(run) -> None:
    assert run.returncode == 0, run.describe()
    (entry,) = run.manifest["outputs"]
    assert entry["status"] == "refused" and entry["file"] is None
    assert sorted(p.name for p in run.output.iterdir()) == ["app.log", "manifest.json"]  # nothing read
    (warning,) = [w for w in run.manifest["warnings"] if w.get("source") == "dicom-host run"]
    assert "refused" in warning["message"] and entry["uri"] in warning["message"]
    assert "refused" in run.stderr  # shown without a terminal too
    assert "1 refused" in run.kinds("outcome")[0]["reason"]


def test_outputs_from_a_file_outside_the_output_locations_are_refused(host_server, series, tmp_path):
    """An application may point a locator at any file the host can read (a 0600 one of the host's user):
    the host does not read it, and says so in the manifest."""
    run = run_job(tmp_path / "out", "--app", elsewhere_app(tmp_path, "file"), "--input", str(series),
                  server=host_server.url)
    check_refused(run)


def test_outputs_from_another_service_on_the_loopback_are_refused(host_server, series, tmp_path, third_party):
    run = run_job(tmp_path / "out", "--app", elsewhere_app(tmp_path, third_party), "--input", str(series),
                  server=host_server.url)
    check_refused(run)
    assert run.manifest["outputs"][0]["uri"] == third_party


def test_outputs_from_the_applications_own_endpoint_are_read(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", elsewhere_app(tmp_path, "own-endpoint"), "--input", str(series),
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    (entry,) = run.manifest["outputs"]
    assert entry["status"] == "received" and entry["uri"].endswith("/copy-0")
    check_inputs_arrived_intact(run, series)


@pytest.mark.parametrize("opt_in", ["option", "setting"])
def test_trust_app_uris_reads_outputs_from_anywhere_and_notes_it(host_server, series, tmp_path, opt_in):
    """The documented opt-in for trusted applications on the same machine: the old behaviour."""
    args = ["--app", elsewhere_app(tmp_path, "file"), "--input", str(series), "--server", host_server.url]
    if opt_in == "option":
        run = run_job(tmp_path / "out", "--trust-app-uris", *args)
    else:
        done = subprocess.run(dicom_host_run("--output", str(tmp_path / "out"), *FAST, *args), capture_output=True,
                              text=True, timeout=90, cwd=REPO, env={**ENV, "DICOM_HOST_TRUST_APP_URIS": "1"})
        run = Run(done.returncode, done.stdout, done.stderr, tmp_path / "out")
    assert run.returncode == 0, run.describe()
    assert any("outside this instance's output locations" in n["message"] for n in run.kinds("notice"))
    assert run.manifest["outputs"][0]["status"] == "received"
    check_inputs_arrived_intact(run, series)


def test_exit_without_being_asked_after_the_task_is_accepted(host_server, series, tmp_path):
    app = tmp_path / "leaves.py"
    app.write_text(LEAVES_ONCE_ITS_OUTPUTS_ARE_TAKEN)
    run = run_job(tmp_path / "out", "--app", f"{PYTHON} {app}", "--input", str(series), server=host_server.url)
    assert run.returncode == 0, run.describe()
    assert run.states() == ["IDLE", "INPROGRESS", "COMPLETED", "EXIT"]
    assert [r["state"] for r in run.kinds("requested")] == ["INPROGRESS", "IDLE"]
    assert any("left without being asked" in n["message"] for n in run.kinds("notice"))
    check_inputs_arrived_intact(run, series)


def test_exit_without_being_asked_before_any_task_is_a_failure(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --exit-unrequested-at IDLE",
                  "--input", str(series), server=host_server.url)
    assert run.returncode == EXIT_APP_FAILED, run.describe()
    assert re.search(r"the application (ended \(exit status 0\)|left \(EXIT\) by itself)", one_line_reason(run))
    assert run.manifest["outputs"] == []


def test_fatal_error_then_canceled(host_server, series, tmp_path):
    """FATALERROR status, CANCELED, IDLE (PS3.19 §7.2): an application failure, and a clean EXIT."""
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --fail", "--input", str(series),
                  server=host_server.url)
    assert run.returncode == EXIT_APP_FAILED, run.describe()
    assert "FATALERROR" in one_line_reason(run) and "failing on purpose" in run.stderr
    assert run.states() == ["IDLE", "INPROGRESS", "CANCELED", "IDLE", "EXIT"]
    manifest = run.manifest
    assert manifest["statuses"][-1]["StatusType"] == "FATALERROR"
    assert manifest["outcome"]["result"] == "app-failed"
    assert manifest["app"]["exit"] == "exit status 0"


def test_crash_is_detected_within_a_second(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --crash-at COMPLETED", "--input", str(series),
                  "--task-timeout", "60", server=host_server.url)
    assert run.returncode == EXIT_APP_FAILED, run.describe()
    assert "exit status 3" in one_line_reason(run)
    assert any("crashing" in line for line in run.stderr.splitlines()[2:])  # app.log's last lines
    crashed_at = next(e["t"] for e in run.events if e["kind"] == "log" and "crashing" in e["data"]["line"])
    ended_at = next(e["t"] for e in run.events if e["kind"] == "outcome")
    assert ended_at - crashed_at < 1.0
    instance_id = run.manifest["instance"]["id"]
    instance = AdminClient(host_server.url).instance(instance_id)
    assert instance["endedAt"] is not None
    assert instance["outputLocations"] and all(l["state"] != "active" for l in instance["outputLocations"])
    assert (host_server.data_dir / "instances" / instance_id).is_dir()  # kept for inspection


def test_startup_timeout(host_server, series, tmp_path):
    started = time.monotonic()
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --startup-delay 30", "--input", str(series),
                  "--startup-timeout", "1", server=host_server.url)
    assert run.returncode == EXIT_TIMEOUT, run.describe()
    assert "first IDLE (startup) did not come within 1 s" in one_line_reason(run)
    assert time.monotonic() - started < 10
    assert process_gone(run.manifest["app"]["pid"])
    assert run.manifest["app"]["exit"] == "killed by SIGTERM"


def test_hang_is_hard_aborted(host_server, series, tmp_path):
    """The application hangs in its task and then stops answering: timeout, then SIGTERM/SIGKILL."""
    run = run_job(tmp_path / "out", "--app",
                  f"{MISBEHAVING_APP} --process-seconds 60 --freeze-on-request CANCELED", "--input", str(series),
                  "--task-timeout", "1", "--call-timeout", "1", server=host_server.url)
    assert run.returncode == EXIT_TIMEOUT, run.describe()
    assert "COMPLETED" in one_line_reason(run)
    notices = [n["message"] for n in run.kinds("notice")]
    assert any("hard abort" in n for n in notices), notices
    assert process_gone(run.manifest["app"]["pid"])


def test_application_that_never_exits_is_killed_after_the_grace(host_server, series, tmp_path):
    run = run_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --ignore-request EXIT", "--input", str(series),
                  "--exit-grace", "0.5", "--state-timeout", "1", server=host_server.url)
    assert run.returncode == 0, run.describe()  # its results were received before it was asked to leave
    check_inputs_arrived_intact(run, series)
    assert any("hard abort" in n["message"] for n in run.kinds("notice"))
    assert run.manifest["app"]["exit"] == "killed by SIGTERM"


def test_interrupt_cancels_the_task(host_server, series, tmp_path):
    job = start_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --process-seconds 1.5", "--input", str(series),
                    server=host_server.url)
    read_events_until(job, "state", to="INPROGRESS")
    job.send_signal(signal.SIGINT)
    stdout, stderr = job.communicate(timeout=30)
    assert job.returncode == EXIT_CANCELED, stderr
    assert "canceled by the user" in stderr
    states = [e["data"]["to"] for e in map(json.loads, stdout.splitlines()) if e["kind"] == "state"]
    assert states == ["CANCELED", "IDLE", "EXIT"]  # after INPROGRESS, read before the interrupt
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["app"]["exit"] == "exit status 0"
    assert manifest["outcome"]["result"] == "canceled"


def test_second_interrupt_aborts_at_once(host_server, series, tmp_path):
    job = start_job(tmp_path / "out", "--app", f"{MISBEHAVING_APP} --process-seconds 60 --cancel-grace 60",
                    "--input", str(series), server=host_server.url)
    events = read_events_until(job, "state", to="INPROGRESS")
    pid = next(e["data"]["pid"] for e in events if e["kind"] == "run")
    job.send_signal(signal.SIGINT)
    read_events_until(job, "state", to="CANCELED")
    started = time.monotonic()
    job.send_signal(signal.SIGINT)
    job.communicate(timeout=30)
    assert job.returncode == EXIT_CANCELED
    assert time.monotonic() - started < 5
    assert process_gone(pid)


def test_a_defect_of_the_runner_still_brings_the_application_down(host_server, series, tmp_path, monkeypatch):
    """Whatever goes wrong inside dicom-host itself, the application is not left running, the instance is
    ended and the manifest written (fault injected into the task driver, in this process)."""
    from hosting_service.orchestration.driver import TaskRun
    from hosting_service.orchestration.progress import Reporter
    from hosting_service.orchestration.runner import Result, Runner, RunOptions

    def broken_task(self):
        raise RuntimeError("injected defect")

    monkeypatch.setattr(TaskRun, "run", broken_task)
    options = RunOptions(app=MISBEHAVING_APP, inputs=[series], output=tmp_path / "out", server=host_server.url,
                         state_timeout=5, exit_grace=2)
    runner = Runner(options, Reporter())
    outcome = runner.run()
    assert outcome.result is Result.INTERNAL and "injected defect" in outcome.reason
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert process_gone(manifest["app"]["pid"])
    instance = AdminClient(host_server.url).instance(manifest["instance"]["id"])
    assert instance["endedAt"] is not None
    events, _ = AdminClient(host_server.url).events(instance["id"], kinds=["internal"])
    assert "RuntimeError: injected defect" in events[0]["data"]["traceback"]
