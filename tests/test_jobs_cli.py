"""``dicom-host submit``, ``jobs``, ``job show`` and ``cancel`` against a real ``dicom-host serve --apps`` and a
real ``dicom-host worker``: the inputs uploaded as a tar stream, the MIP results checked by content, the
output folder under ``run``'s rules, the exit statuses of ``run``, the admin token from a file or the
environment, and the tar streams themselves."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import HostServer
from hosting_service.admin.jobs_client import JobsClient
from hosting_service.admin.tarstream import (
    SHA256_HEADER,
    TarPlan,
    TarSourceChanged,
    UnsafeMember,
    extract,
    input_names,
)
from hosting_service.dicom.samples import write_sample_series
from jobs_harness import alive, app_entry, app_pid, dicom_host, start_worker, stop, submit, wait_for, write_registry
from run_harness import ENV, EXIT_APP_FAILED, EXIT_CANCELED, EXIT_SERVER, EXIT_USAGE, REPO
from test_run_mip import check_mip, mip_source_series, read_series

APPS = {
    "mip": app_entry("client.examples.mip_app", args=["--output-protocols", "http:"]),
    "failing": app_entry("client.examples.misbehaving_app", args=["--fail"]),
    "slow": app_entry("client.examples.misbehaving_app", args=["--process-seconds", "60"]),
}


@pytest.fixture(scope="module")
def two_series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=4, series=2, size=16)
    return folder


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory):
    """A server with the registry of :data:`APPS` and a worker running two jobs at once."""
    root = tmp_path_factory.mktemp("jobs")
    (root / "appwork").mkdir()
    apps = {**APPS, "slow": {**APPS["slow"], "environment": {"JOB_TEST_MARK": "from-the-registry"},
                             "working_dir": str(root / "appwork")}}
    registry = write_registry(root / "apps.toml", apps)
    server = HostServer(root / "data", ["--apps", str(registry)]).start()
    server.app_folder = root / "appwork"
    worker = start_worker(server.url, "--concurrency", "2", "--name", "cli-worker", log=root / "worker.log")
    server.worker_log = root / "worker.log"
    yield server
    stop(worker)
    server.close()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(dicom_host(*args), capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def test_submit_wait_output_writes_the_mip_results(jobs_server, two_series, tmp_path):
    out = tmp_path / "results"
    done = submit(jobs_server.url, "--app", "mip", "--input", str(two_series), "--option", "task_per=series",
                  "--option", "label=two series", "--wait", "--output", str(out), "--json")
    assert done.returncode == 0, done.stderr + jobs_server.worker_log.read_text()[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert "job" in kinds and "state" in kinds  # the job's own events, then its instance's
    assert [e["data"]["to"] for e in events if e["kind"] == "state"] == [
        "IDLE", "INPROGRESS", "COMPLETED", "IDLE", "INPROGRESS", "COMPLETED", "IDLE", "EXIT"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outcome"]["result"] == "completed"
    assert manifest["inputs"]["count"] == 8 and "job" in manifest["inputs"]
    assert (out / "app.log").exists()
    sources = read_series(two_series)
    assert len(manifest["outputs"]) == 2
    for entry in manifest["outputs"]:
        path = out / entry["file"]
        check_mip(path, sources[mip_source_series(path)])
    job_id = manifest["job"]["id"]
    shown = json.loads(cli("job", "show", job_id, "--server", jobs_server.url, "--json").stdout)
    assert (shown["state"], shown["result"], shown["options"]["label"]) == ("completed", "completed", "two series")
    assert shown["manifest"]["outputs"] == manifest["outputs"]
    assert shown["inputs"]["count"] == 8


def test_output_is_replaced_only_on_success(jobs_server, two_series, tmp_path):
    out = tmp_path / "results"
    first = submit(jobs_server.url, "--app", "mip", "--input", str(two_series), "--output", str(out))
    assert first.returncode == 0, first.stderr
    assert f"completed: 2 objects in {out}" in first.stdout  # a MIP per series
    before = sorted(p.name for p in out.iterdir())
    failed = submit(jobs_server.url, "--app", "failing", "--input", str(two_series), "--output", str(out))
    assert failed.returncode == EXIT_APP_FAILED, failed.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # the earlier results are untouched
    (kept,) = tmp_path.glob("results.run-*")
    assert json.loads((kept / "manifest.json").read_text())["outcome"]["result"] == "app-failed"
    again = submit(jobs_server.url, "--app", "mip", "--input", str(two_series), "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "manifest.json").read_text())["outcome"]["result"] == "completed"
    not_ours = tmp_path / "not-ours"
    not_ours.mkdir()
    (not_ours / "notes.txt").write_text("mine")
    refused = submit(jobs_server.url, "--app", "mip", "--input", str(two_series), "--output", str(not_ours))
    assert refused.returncode == EXIT_USAGE and "not empty" in refused.stderr


def test_cancel_of_a_running_job(jobs_server, two_series):
    job = json.loads(submit(jobs_server.url, "--app", "slow", "--input", str(two_series)).stdout)
    admin = JobsClient(jobs_server.url)
    instance = wait_for("the job's instance", lambda: admin.job(job["id"]).get("instanceId"), 30)
    wait_for("the application's INPROGRESS", lambda: admin.instance(instance)["state"] == "INPROGRESS", 30)
    pid = app_pid(admin, instance)
    assert pid and alive(pid)
    # the registry entry's environment and working folder
    assert b"JOB_TEST_MARK=from-the-registry" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert Path(f"/proc/{pid}/cwd").resolve() == jobs_server.app_folder.resolve()
    done = cli("cancel", job["id"], "--server", jobs_server.url)
    assert done.returncode == 0 and "cancel requested" in done.stdout, done.stderr
    final = wait_for("the job's end", lambda: (j := admin.job(job["id"]))["state"] != "running" and j, 40)
    assert (final["state"], final["result"]) == ("canceled", "canceled"), final
    assert "admin API" in final["reason"]
    wait_for("the application's end", lambda: not alive(pid), 10)
    states = [e["data"]["to"] for e in admin.events(instance, kinds=["state"])[0]]
    assert states[-3:] == ["CANCELED", "IDLE", "EXIT"]  # canceled the standard way, not killed
    again = cli("cancel", job["id"], "--server", jobs_server.url)
    assert again.returncode == EXIT_SERVER and "409" in again.stderr


def test_submit_wait_exit_status_of_a_cancel(jobs_server, two_series, tmp_path):
    """A job canceled through the API while ``submit --wait`` follows it: ``run``'s status for canceled."""
    waiting = subprocess.Popen(dicom_host("submit", "--server", jobs_server.url, "--app", "slow", "--input",
                                          str(two_series), "--wait", "--json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        first = json.loads(waiting.stdout.readline())
        assert first["kind"] == "job" and first["data"]["kind"] == "submitted"
        job_id = first["data"]["data"]["id"]
        admin = JobsClient(jobs_server.url)
        wait_for("INPROGRESS", lambda: (i := admin.job(job_id).get("instanceId")) and
                 admin.instance(i)["state"] == "INPROGRESS", 30)
        admin.cancel(job_id)
        waiting.wait(60)
        assert waiting.returncode == EXIT_CANCELED, waiting.stderr.read()
    finally:
        waiting.kill()
        waiting.communicate()


def test_queued_job_listed_shown_and_canceled(tmp_path, two_series):
    registry = write_registry(tmp_path / "apps.toml", APPS)
    server = HostServer(tmp_path / "data", ["--apps", str(registry)]).start()  # no worker: jobs stay queued
    try:
        done = submit(server.url, "--app", "mip", "--input", str(two_series), str(two_series))
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["state"] == "queued" and job["inputs"]["count"] == 16  # the folder twice, under two names
        listed = cli("jobs", "--server", server.url, "--state", "queued")
        assert job["id"] in listed.stdout and "mip" in listed.stdout
        shown = cli("job", "show", job["id"], "--server", server.url)
        assert shown.returncode == 0 and "queued" in shown.stdout
        canceled = cli("cancel", job["id"], "--server", server.url)
        assert canceled.returncode == 0 and "canceled" in canceled.stdout
        assert JobsClient(server.url).job(job["id"])["state"] == "canceled"
        unknown = submit(server.url, "--app", "no-such-app", "--input", str(two_series))
        assert unknown.returncode == EXIT_USAGE and "no-such-app" in unknown.stderr
        missing = submit(server.url, "--app", "mip", "--input", str(tmp_path / "missing"))
        assert missing.returncode == EXIT_USAGE and "input not found" in missing.stderr
        (tmp_path / "empty").mkdir()
        empty = submit(server.url, "--app", "mip", "--input", str(tmp_path / "empty"))
        assert empty.returncode == EXIT_USAGE and "no file to upload" in empty.stderr
        assert [j["id"] for j in JobsClient(server.url).jobs()] == [job["id"]]  # nothing else was queued
        gone = cli("job", "show", "no-such-job", "--server", server.url)
        assert gone.returncode == EXIT_SERVER and "404" in gone.stderr
    finally:
        server.close()


def test_submit_streams_a_large_upload_in_bounded_memory(tmp_path):
    """512 MiB of inputs: the submitting process stays far below that (each file is read in chunks, twice).
    The bound leaves room for the interpreter and its imports (about 70 MiB) and for what a loaded machine
    adds (up to 170 MiB seen in a full CI run), and still fails a client that holds the body."""
    server = HostServer(tmp_path / "data", ["--apps", str(write_registry(tmp_path / "apps.toml", APPS))]).start()
    try:
        big = tmp_path / "inputs" / "big.bin"
        big.parent.mkdir()
        with open(big, "wb") as f:
            f.truncate(512 << 20)
        (big.parent / "small.bin").write_bytes(b"x" * 1000)
        script = ("import resource, sys; from hosting_service.cli.main import main; "
                  f"code = main(['submit', '--server', {server.url!r}, '--app', 'mip', '--input', {str(big.parent)!r}]); "
                  "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=REPO,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["inputs"] == {"count": 2, "bytes": (512 << 20) + 1000}
        maxrss_kib = int(done.stderr.split("maxrss")[1].split()[0])
        assert maxrss_kib < 256 * 1024, f"the submitting process grew to {maxrss_kib} KiB"
    finally:
        server.close()


def test_an_oversized_submission_is_refused_before_it_is_sent(tmp_path):
    server = HostServer(tmp_path / "data", ["--apps", str(write_registry(tmp_path / "apps.toml", APPS))],
                        env={"DICOM_HOST_JOB_MAX_UPLOAD": str(1 << 20)}).start()
    try:
        big = tmp_path / "inputs" / "big.bin"
        big.parent.mkdir()
        with open(big, "wb") as f:
            f.truncate(64 << 20)
        done = submit(server.url, "--app", "mip", "--input", str(big.parent))
        assert done.returncode == EXIT_USAGE and "413" in done.stderr, done.stderr
        assert JobsClient(server.url).jobs() == []
    finally:
        server.close()


def test_admin_token_from_a_file_or_the_environment(tmp_path, two_series):
    token = "s3cret-token-for-the-test"
    server = HostServer(tmp_path / "data", ["--apps", str(write_registry(tmp_path / "apps.toml", APPS))],
                        env={"DICOM_HOST_ADMIN_TOKEN": token}).start()
    try:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        refused = cli("jobs", "--server", server.url)
        assert refused.returncode == EXIT_SERVER and "401" in refused.stderr
        assert cli("jobs", "--server", server.url, "--admin-token-file", str(token_file)).returncode == 0
        from_env = subprocess.run(dicom_host("jobs", "--server", server.url), capture_output=True, text=True,
                                  env={**ENV, "DICOM_HOST_ADMIN_TOKEN": token}, timeout=60)
        assert from_env.returncode == 0, from_env.stderr
        done = submit(server.url, "--app", "mip", "--input", str(two_series), "--admin-token-file", str(token_file))
        assert done.returncode == 0, done.stderr
        no_token = submit(server.url, "--app", "mip", "--input", str(two_series))
        assert no_token.returncode == EXIT_SERVER
        instance = cli("instance", "list", "--server", server.url, "--admin-token-file", str(token_file))
        assert instance.returncode == 0, instance.stderr
        empty = tmp_path / "empty"
        empty.write_text("\n")
        bad = cli("jobs", "--server", server.url, "--admin-token-file", str(empty))
        assert bad.returncode == EXIT_USAGE and "token alone" in bad.stderr
        absent = cli("jobs", "--server", server.url, "--admin-token-file", str(tmp_path / "absent"))
        assert absent.returncode == EXIT_USAGE and "absent" in absent.stderr
        assert "ps" in cli("submit", "--help").stdout  # --admin-token says where it shows
    finally:
        server.close()


# --- the tar streams --------------------------------------------------------------------------------------

def test_tar_plan_is_exact_and_carries_digests(tmp_path, two_series):
    plan = TarPlan()
    plan.add_bytes("job.json", b'{"app": "mip"}')
    patient = next(two_series.iterdir())
    for name, path in input_names([two_series, patient]):
        plan.add_file(name, path)
    stream = b"".join(plan.chunks())
    assert len(stream) == plan.length
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as archive:
        members = [(m.name, m.pax_headers.get(SHA256_HEADER)) for m in archive]
    assert members[0][0] == "job.json"
    assert len(members) == 1 + 8 + 8 and all(len(d) == 64 for _, d in members)
    assert all(n.startswith((f"inputs/{two_series.name}/{patient.name}/", f"inputs/{patient.name}/"))
               for n, _ in members[1:]), members
    out = tmp_path / "out"
    out.mkdir()
    names = extract(io.BytesIO(stream), out)
    assert len(names) == 17 and (out / "job.json").read_bytes() == b'{"app": "mip"}'


def test_changed_file_ends_the_stream(tmp_path):
    source = tmp_path / "a.dcm"
    source.write_bytes(b"x" * 1000)
    plan = TarPlan()
    plan.add_file("inputs/a.dcm", source)
    source.write_bytes(b"y" * 1000)
    with pytest.raises(TarSourceChanged):
        b"".join(plan.chunks())


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/../../b", ""])
def test_unsafe_member_names_are_refused(tmp_path, name):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name or "placeholder")
        if not name:
            info.name = ""
        archive.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    with pytest.raises(UnsafeMember):
        extract(buffer, tmp_path)


def test_links_and_wrong_digests_are_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    buffer.seek(0)
    with pytest.raises(UnsafeMember, match="not a regular file"):
        extract(buffer, tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("data")
        info.size = 3
        info.pax_headers = {SHA256_HEADER: "0" * 64}
        archive.addfile(info, io.BytesIO(b"abc"))
    buffer.seek(0)
    with pytest.raises(UnsafeMember, match="do not match"):
        extract(buffer, tmp_path)
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob("*.part"))
