"""``dicom-host run`` as a person meets it: bad usage gets a one-line reason and status 2, an unreachable
server status 3, a terminal gets a live status line, and ten jobs share one service."""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from hosting_service.dicom.samples import write_sample_series
from run_harness import ENV, EXIT_APP_FAILED, EXIT_SERVER, EXIT_USAGE, MISBEHAVING_APP, REPO, run_job


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=4, size=16)
    return folder


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("args, reason", [
    (["--app", "python 'unclosed", "--input", "{series}"], "No closing quotation"),
    (["--app", "   ", "--input", "{series}"], "--app is empty"),
    (["--app", "/no/such/program", "--input", "{series}"], "cannot start '/no/such/program'"),
    (["--app", MISBEHAVING_APP, "--input", "/no/such/folder"], "input not found: /no/such/folder"),
    (["--app", MISBEHAVING_APP, "--input", "{not_dicom}"], "holds no DICOM data set"),
    (["--app", MISBEHAVING_APP, "--input", "{series}", "--task-timeout", "0"], "must be more than 0 seconds"),
    (["--app", MISBEHAVING_APP, "--input", "{series}", "--task-per", "slice"], "invalid choice"),
])
def test_bad_usage(host_server, series, tmp_path, args, reason):
    (tmp_path / "broken.dcm").write_bytes(b"not DICOM at all")
    args = [a.format(series=series, not_dicom=tmp_path / "broken.dcm") for a in args]
    run = run_job(tmp_path / "out", *args, server=host_server.url)
    assert run.returncode == EXIT_USAGE, run.describe()
    assert "Traceback" not in run.stderr
    assert reason in run.stderr.strip().splitlines()[-1]  # argparse shows the usage above its one line


def test_output_folder_of_something_else_is_refused(host_server, series, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier results")
    run = run_job(tmp_path / "out", "--app", MISBEHAVING_APP, "--input", str(series), server=host_server.url)
    assert run.returncode == EXIT_USAGE
    assert "is not empty and holds no results of an earlier dicom-host run" in one_line(run.stderr)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("a file"), "is a file"),
    (lambda p: p.symlink_to(p.parent), "is a symbolic link"),
])
def test_output_that_is_not_a_folder_is_named_for_what_it_is(host_server, series, tmp_path, make, says):
    make(tmp_path / "out")
    run = run_job(tmp_path / "out", "--app", MISBEHAVING_APP, "--input", str(series), server=host_server.url)
    assert run.returncode == EXIT_USAGE
    assert says in one_line(run.stderr)


def test_output_that_cannot_be_created_is_a_usage_error(host_server, series, tmp_path):
    (tmp_path / "file").write_text("a file")
    run = run_job(tmp_path / "file" / "out", "--app", MISBEHAVING_APP, "--input", str(series),
                  server=host_server.url)
    assert run.returncode == EXIT_USAGE, run.describe()
    assert "cannot create --output" in one_line(run.stderr)


def test_the_same_command_runs_again_and_replaces_its_results(host_server, series, tmp_path):
    first = run_job(tmp_path / "results", "--app", MISBEHAVING_APP, "--input", str(series), server=host_server.url)
    assert first.returncode == 0, first.describe()
    first_id = first.manifest["instance"]["id"]
    again = run_job(tmp_path / "results", "--app", MISBEHAVING_APP, "--input", str(series), server=host_server.url)
    assert again.returncode == 0, again.describe()
    assert again.manifest["instance"]["id"] != first_id
    (entry,) = again.manifest["outputs"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(["app.log", "manifest.json",
                                                                              entry["file"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing left beside it

    failed = run_job(tmp_path / "results", "--app", f"{MISBEHAVING_APP} --fail", "--input", str(series),
                     server=host_server.url)
    assert failed.returncode == EXIT_APP_FAILED, failed.describe()
    assert (tmp_path / "results" / "manifest.json").read_text() == json.dumps(again.manifest, indent=2) + "\n"
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "results"]
    assert kept.name.startswith("results.run-") and (kept / "app.log").is_file()
    assert json.loads((kept / "manifest.json").read_text())["outcome"]["result"] == "app-failed"
    assert str(kept / "app.log") in failed.stderr


def test_server_unreachable(series, tmp_path):
    run = run_job(tmp_path / "out", "--app", MISBEHAVING_APP, "--input", str(series),
                  server="http://127.0.0.1:9")  # the discard port: nothing listens there
    assert run.returncode == EXIT_SERVER, run.describe()
    assert "unreachable" in one_line(run.stderr)
    assert not (tmp_path / "out").exists()  # the folder it created for nothing is gone


def test_live_progress_on_a_terminal_and_quiet_otherwise(host_server, series, tmp_path):
    leader, follower = pty.openpty()
    argv = [sys.executable, "-m", "hosting_service.cli.main", "run", "--app", MISBEHAVING_APP, "--input",
            str(series), "--server", host_server.url]
    done = subprocess.run([*argv, "--output", str(tmp_path / "tty")], stdout=subprocess.PIPE, stderr=follower,
                          env=ENV, cwd=REPO, timeout=60)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert done.returncode == 0
    text = shown.decode()
    assert "\r\x1b[K" in text  # the status line is redrawn in place
    assert "EXIT | inputs 4/4 fetched | outputs 1/1 received" in text
    assert "app stderr:" in text  # the application's output, above the status line
    assert done.stdout.decode().startswith("dicom-host run: completed: 1 object in")

    quiet = subprocess.run([*argv, "--output", str(tmp_path / "pipe")], capture_output=True, env=ENV, cwd=REPO,
                           timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == b""


def test_ten_jobs_at_once_on_one_service(host_server, tmp_path):
    inputs = []
    for n in range(10):  # each job its own data, so a mix-up would show
        folder = tmp_path / f"in{n}"
        write_sample_series(folder, slices=3, size=16, seed=f"job {n}")
        inputs.append(folder)

    def job(n: int):
        return run_job(tmp_path / f"out{n}", "--app", MISBEHAVING_APP, "--input", str(inputs[n]),
                       server=host_server.url, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        runs = list(pool.map(job, range(10)))
    assert len({r.manifest["instance"]["id"] for r in runs}) == 10
    for n, run in enumerate(runs):
        assert run.returncode == 0, run.describe()
        (entry,) = run.manifest["outputs"]
        fetched = sorted(line.split()[3] for line in (run.output / entry["file"]).read_text().splitlines())
        assert fetched == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs[n].rglob("*.dcm"))


def test_the_runs_own_server_answers_only_the_run(tmp_path):
    """Hosted applications share its loopback interface: without the run's token its admin API refuses them."""
    from hosting_service.admin.client import AdminClient, AdminError
    from hosting_service.orchestration.server import EmbeddedServer

    with EmbeddedServer(data_dir=tmp_path / "server") as server:
        with pytest.raises(AdminError) as refused:
            AdminClient(server.url).instances()
        assert refused.value.status == 401
        assert AdminClient(server.url, token=server.admin_token).instances() == []


def test_skipped_inputs_are_reported_without_a_terminal(host_server, series, tmp_path):
    (tmp_path / "broken.dcm").write_bytes(b"not DICOM at all")
    run = run_job(tmp_path / "out", "--app", MISBEHAVING_APP, "--input", str(series), str(tmp_path / "broken.dcm"),
                  server=host_server.url)
    assert run.returncode == 0, run.describe()
    (line,) = run.stderr.splitlines()
    assert line.startswith("dicom-host run: input skipped: ") and "broken.dcm" in line
    assert "holds no DICOM data set" in line


def test_help_is_plain_text():
    done = subprocess.run([sys.executable, "-m", "hosting_service.cli.main", "run", "--help"], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=60)
    assert done.returncode == 0 and "--trust-app-uris" in done.stdout
    assert "``" not in done.stdout and ":mod:" not in done.stdout
