"""``dicom-host worker`` as a real subprocess against real ``dicom-host serve --apps`` frontends: SIGTERM cancels
its jobs the standard way, SIGKILL takes its applications with it (checked by pid) and the server fails or
re-queues its jobs as the registry says, other jobs go on; stale temporary folders of dead processes are
removed. With PostgreSQL: two frontends and two workers run 50 MIP jobs submitted by ``submit``, and a
frontend killed mid-job loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HostServer
from hosting_service.admin.jobs_client import JobsClient
from hosting_service.dicom.samples import write_sample_series
from jobs_harness import alive, app_entry, app_pid, dicom_host, start_worker, stop, submit, wait_for, write_registry
from run_harness import ENV

LEASE = 3
"""The servers' lease (DICOM_HOST_LEASE_SECONDS): a dead worker's jobs are reaped within seconds."""
APPS = {
    "mip": app_entry("client.examples.mip_app", args=["--output-protocols", "http:"]),
    "slow": app_entry("client.examples.misbehaving_app", args=["--process-seconds", "60"]),
    "slowretry": app_entry("client.examples.misbehaving_app", args=["--process-seconds", "6"], retries=1),
    "stubborn": app_entry("client.examples.misbehaving_app", args=["--process-seconds", "60", "--ignore-request",
                                                                   "CANCELED"]),
}


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=3, size=16)
    return folder


@pytest.fixture
def jobs_server(tmp_path):
    server = HostServer(tmp_path / "data", ["--apps", str(write_registry(tmp_path / "apps.toml", APPS))],
                        env={"DICOM_HOST_LEASE_SECONDS": str(LEASE)}).start()
    yield server
    server.close()


def submitted(server_url: str, app: str, inputs: Path) -> str:
    done = submit(server_url, "--app", app, "--input", str(inputs))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def running_app(admin: JobsClient, job_id: str, timeout: float = 30) -> int:
    """The pid of the job's application once it is INPROGRESS."""
    def probe():
        instance = admin.job(job_id).get("instanceId")
        return instance and admin.instance(instance)["state"] == "INPROGRESS" and app_pid(admin, instance)
    return wait_for(f"job {job_id} INPROGRESS", probe, timeout)


def final(admin: JobsClient, job_id: str, timeout: float) -> dict:
    return wait_for(f"job {job_id} finished",
                    lambda: (j := admin.job(job_id))["state"] in ("completed", "failed", "canceled") and j, timeout)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_temporary_folders_are_removed_when_run_and_worker_start(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    stale_run = temp / f"dicom-host-run-{dead_pid()}-abc"
    stale_worker = temp / f"dicom-host-worker-{dead_pid()}-def"
    live = temp / f"dicom-host-run-{os.getpid()}-ghi"
    other = temp / "dicom-host-run-something"
    for folder in (stale_run, stale_worker, live, other):
        (folder / "sub").mkdir(parents=True)
    env = {**ENV, "TMPDIR": str(temp)}
    done = subprocess.run(dicom_host("run", "--app", "true", "--input", str(tmp_path / "missing"), "--output",
                                     str(tmp_path / "out")), capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert not stale_run.exists() and not stale_worker.exists()
    assert live.exists() and other.exists()  # a live owner's folder, and one that names no owner
    stale = temp / f"dicom-host-worker-{dead_pid()}-jkl"
    stale.mkdir()
    worker = subprocess.Popen(dicom_host("worker", "--server", "http://127.0.0.1:9"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for("the worker's clean-up", lambda: not stale.exists(), 20)
        worker.send_signal(signal.SIGHUP)  # a closed terminal stops it like SIGTERM
        output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "leasing failed" in output
    finally:
        worker.kill()


def test_sigterm_cancels_running_jobs_then_the_worker_exits(jobs_server, series, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    worker = start_worker(jobs_server.url, log=tmp_path / "worker.log", env={"TMPDIR": str(temp)})
    admin = JobsClient(jobs_server.url)
    try:
        job_id = submitted(jobs_server.url, "slow", series)
        pid = running_app(admin, job_id)
        assert list(temp.glob("dicom-host-worker-*"))  # the job's private folder
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(40) == 0, (tmp_path / "worker.log").read_text()
        assert time.monotonic() - started < 30
        job = admin.job(job_id)
        assert (job["state"], job["result"]) == ("canceled", "canceled"), job
        assert "the worker was stopped" in job["reason"]
        assert not alive(pid)
        states = [e["data"]["to"] for e in admin.events(job["instanceId"], kinds=["state"])[0]]
        assert states[-3:] == ["CANCELED", "IDLE", "EXIT"]
        assert not list(temp.glob("dicom-host-worker-*"))  # removed at the job's end
        manifest = job["manifest"]
        assert manifest and manifest["outcome"]["result"] == "canceled"  # uploaded before the finish
    finally:
        stop(worker)


def test_a_second_sigterm_kills_applications_that_do_not_cancel(jobs_server, series, tmp_path):
    worker = start_worker(jobs_server.url, log=tmp_path / "worker.log")
    admin = JobsClient(jobs_server.url)
    try:
        job_id = submitted(jobs_server.url, "stubborn", series)
        pid = running_app(admin, job_id)
        worker.send_signal(signal.SIGTERM)
        wait_for("the cancel asked", lambda: any(e["data"].get("state") == "CANCELED" for e in admin.events(
            admin.job(job_id)["instanceId"], kinds=["requested"])[0]), 20)
        assert alive(pid) and worker.poll() is None  # it says yes to CANCELED and goes on working
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, (tmp_path / "worker.log").read_text()
        assert not alive(pid)
        job = admin.job(job_id)
        assert (job["state"], job["result"]) == ("canceled", "canceled"), job
        assert "killed" in job["reason"] and job["manifest"]["outcome"]["reason"] == job["reason"]
    finally:
        stop(worker)


def test_sigkill_of_a_worker_ends_its_applications_and_its_jobs(jobs_server, series, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    doomed = start_worker(jobs_server.url, "--concurrency", "2", "--apps", "slow,slowretry",
                          log=tmp_path / "doomed.log", env={"TMPDIR": str(temp)})
    other = start_worker(jobs_server.url, "--apps", "mip", log=tmp_path / "other.log")
    admin = JobsClient(jobs_server.url)
    late = None
    try:
        failing = submitted(jobs_server.url, "slow", series)
        retried = submitted(jobs_server.url, "slowretry", series)
        pids = [running_app(admin, failing), running_app(admin, retried)]
        unaffected = submitted(jobs_server.url, "mip", series)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        killed_at = time.monotonic()
        wait_for("the dead worker's applications gone", lambda: not any(alive(p) for p in pids), 5, 0.05)
        assert time.monotonic() - killed_at < 5
        job = final(admin, failing, 4 * LEASE + 10)
        assert job["state"] == "failed" and "lease" in job["reason"], job  # retries = 0
        instance = admin.instance(job["instanceId"])
        assert instance["endedAt"] is not None  # its instance ended with the lease
        again = wait_for("the retried job queued again", lambda: (j := admin.job(retried))["state"] == "queued" and j,
                         4 * LEASE + 10)
        assert again["attempts"] == 1
        assert list(temp.glob("dicom-host-worker-*"))  # the killed worker's job folders, stale now
        late = start_worker(jobs_server.url, "--apps", "slowretry", log=tmp_path / "late.log", env={"TMPDIR": str(temp)})
        done = final(admin, retried, 60)
        assert (done["state"], done["result"], done["attempts"]) == ("completed", "completed", 2), done
        assert done["instanceId"] != again["instanceId"] or again["instanceId"] is None
        assert final(admin, unaffected, 60)["state"] == "completed"
        assert not list(temp.glob("dicom-host-worker-*"))  # the late worker removed the dead one's folders
    finally:
        for process in (doomed, other, late):
            if process is not None:
                stop(process)


# --- several frontends on one PostgreSQL --------------------------------------------------------------------

@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> list[Path]:
    """Five different small CT series, so that each job's result can only match its own inputs."""
    root = tmp_path_factory.mktemp("variants")
    folders = []
    for n in range(5):
        folder = root / f"v{n}"
        write_sample_series(folder, slices=2 + n % 3, size=16, seed=f"variant-{n}")
        folders.append(folder)
    return folders


def frontend(data: Path, registry: Path, store: str, **kwargs) -> HostServer:
    """A frontend on the shared data volume ``data`` and the shared store."""
    return HostServer(data, ["--apps", str(registry), "--workers", "1"], {"DICOM_HOST_LEASE_SECONDS": "10"},
                      store=store, **kwargs).start()


def check_results(admin: JobsClient, job_id: str, inputs: Path, folder: Path) -> None:
    """The job's results, downloaded: one MIP of ``inputs``, checked by content, and its manifest."""
    from test_run_mip import check_mip

    folder.mkdir()
    names = admin.download_results(job_id, folder)
    assert "manifest.json" in names and "app.log" in names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["outcome"]["result"] == "completed" and manifest["job"]["id"] == job_id
    (output,) = manifest["outputs"]
    check_mip(folder / output["file"], sorted(read(inputs), key=lambda ds: ds.InstanceNumber))


def read(folder: Path):
    import pydicom

    return [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]


@pytest.mark.timeout(300)
def test_two_frontends_and_two_workers_run_fifty_uploaded_jobs(postgres_server, variants, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = postgres_server.create_database()
    registry = write_registry(tmp_path / "apps.toml", {"mip": APPS["mip"]})
    data = tmp_path / "data"
    fronts = [frontend(data, registry, store), frontend(data, registry, store)]
    workers = [start_worker(f.url, "--concurrency", "2", "--name", f"w{n}", log=tmp_path / f"worker{n}.log")
               for n, f in enumerate(fronts)]
    admins = [JobsClient(f.url) for f in fronts]
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda n: (n, submitted(fronts[n % 2].url, "mip", variants[n % 5])), range(50)))
        jobs = {}
        for n, job_id in ids:
            jobs[job_id] = final(admins[n % 2], job_id, 240 - (time.monotonic() - started))
        failed = {i: j for i, j in jobs.items() if j["state"] != "completed"}
        assert not failed, (next(iter(failed.values())), (tmp_path / "worker0.log").read_text()[-3000:])
        assert {j["worker"] for j in jobs.values()} == {"w0", "w1"}  # both workers took jobs
        for n, job_id in ids:
            check_results(admins[(n + 1) % 2], job_id, variants[n % 5], tmp_path / f"results-{n}")
        print(f"50 jobs in {time.monotonic() - started:.1f} s")
    finally:
        for process in workers:
            stop(process)
        for f in fronts:
            f.close()


def test_a_frontend_killed_mid_job_loses_nothing(postgres_server, series, tmp_path):
    """Two frontends share one listening socket (as behind a load balancer); one is killed while the job's
    application works: the job completes through the other."""
    import socket

    store = postgres_server.create_database()
    registry = write_registry(tmp_path / "apps.toml", {
        "mip": APPS["mip"],
        "pause": app_entry("client.examples.misbehaving_app", args=["--process-seconds", "4"])})
    data = tmp_path / "data"
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    fronts = [frontend(data, registry, store, listener=listener) for _ in range(2)]
    worker = start_worker(fronts[0].url, log=tmp_path / "worker.log")
    admin = JobsClient(fronts[0].url)
    try:
        job_id = submitted(fronts[0].url, "pause", series)
        running_app(admin, job_id)
        instance = admin.job(job_id)["instanceId"]
        # killed while the application works (its inputs fetched): no request of its own is in flight then,
        # as a killed frontend's requests in flight are lost, behind a load balancer too
        wait_for("the inputs fetched", lambda: admin.events(instance, kinds=["locator"])[0], 20, 0.05)
        time.sleep(0.5)
        os.killpg(fronts[0].process.pid, signal.SIGKILL)
        fronts[0].process.wait()
        job = final(admin, job_id, 60)
        assert (job["state"], job["result"]) == ("completed", "completed"), (
            job, (tmp_path / "worker.log").read_text()[-3000:])
        assert job["manifest"]["outcome"]["result"] == "completed"
        after = submitted(fronts[1].url, "mip", series)  # the survivor goes on taking and running jobs
        assert final(admin, after, 60)["state"] == "completed"
        check_results(admin, after, series, tmp_path / "results")
    finally:
        stop(worker)
        for f in fronts:
            f.close()


def test_a_worker_the_server_refuses_exits_at_once(jobs_server, tmp_path):
    unknown = subprocess.run(dicom_host("worker", "--server", jobs_server.url, "--apps", "mip,nosuch"),
                             capture_output=True, text=True, env=ENV, timeout=60)
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr, unknown.stderr
    token_file = tmp_path / "token"
    token_file.write_text("wrong")
    guarded = HostServer(tmp_path / "guarded", ["--apps", str(tmp_path / "apps.toml")],
                         env={"DICOM_HOST_ADMIN_TOKEN": "right"}).start()
    try:
        refused = subprocess.run(dicom_host("worker", "--server", guarded.url, "--admin-token-file", str(token_file)),
                                 capture_output=True, text=True, env=ENV, timeout=60)
        assert refused.returncode == 3 and "401" in refused.stderr, refused.stderr
    finally:
        guarded.close()


def test_json_logs_of_a_worker_carry_the_job_id(jobs_server, series, tmp_path):
    """``worker --log-format json``: one JSON object a line; the lines of a job's thread name its job."""
    log = tmp_path / "worker.log"
    worker = start_worker(jobs_server.url, "--log-format", "json", log=log)
    try:
        job_id = submitted(jobs_server.url, "mip", series)
        assert final(JobsClient(jobs_server.url), job_id, 60)["state"] == "completed"
    finally:
        assert stop(worker) == 0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(r.get("job_id") == job_id and job_id in r["message"] for r in records), records
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
