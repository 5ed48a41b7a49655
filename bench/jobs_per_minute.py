"""Jobs per minute through the job queue: ``dicom-host serve --apps`` with ``trivial_app.py`` registered, two
``dicom-host worker`` processes, on SQLite and on PostgreSQL side by side, in the same run.

    python bench/jobs_per_minute.py [--jobs 40] [--workers 2] [--concurrency 1] [--stores sqlite,postgresql]

For each store: a fresh server (2 gunicorn workers, like a small deployment) and the workers start and go
idle (long-polling for leases); then ``--jobs`` jobs are submitted at once, their inputs uploaded (5 small
CT slices each), and the clock runs from the first submission until every job has finished. Prints jobs per
minute, the median time from submission to finish, and each job's queue wait. Every job must complete.
PostgreSQL is a throwaway server from Debian's binaries (tests/postgres.py); without them that row is skipped.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hosting_service.admin.jobs_client import JobsClient  # noqa: E402
from hosting_service.dicom.samples import write_sample_series  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
DICOM_HOST = [sys.executable, "-m", "hosting_service.cli.main"]
FINAL = ("completed", "failed", "canceled")


def serve(work: Path, store: str) -> tuple[subprocess.Popen, str]:
    registry = work / "apps.toml"
    registry.write_text(f'[apps.trivial]\ncommand = ["{sys.executable}", "{HERE / "trivial_app.py"}"]\n')
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {**ENV, "DICOM_HOST_STORE": store} if store else ENV
    with open(work / "server.log", "ab") as log:
        server = subprocess.Popen([*DICOM_HOST, "serve", "--bind", f"fd://{listener.fileno()}", "--data-dir",
                                   str(work / "data"), "--apps", str(registry), "--workers", "2"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(listener.fileno(),),
                                  start_new_session=True)
    listener.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                return server, url
        except requests.RequestException:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server did not start: {(work / 'server.log').read_text()[-2000:]}")


def measure(label: str, store: str, args, inputs: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="jobs-per-minute-") as tmp:
        work = Path(tmp)
        server, url = serve(work, store)
        workers = [subprocess.Popen([*DICOM_HOST, "worker", "--server", url, "--name", f"bench-{n}",
                                     "--concurrency", str(args.concurrency), "--log-level", "warning"],
                                    env=ENV, stdout=subprocess.DEVNULL, stderr=open(work / f"worker-{n}.log", "wb"))
                   for n in range(args.workers)]
        client = JobsClient(url)
        try:
            time.sleep(1.0)  # the workers are polling for leases
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                ids = list(pool.map(lambda _: client.submit("trivial", [inputs])["id"], range(args.jobs)))
            submitted = time.monotonic() - started
            pending = set(ids)
            deadline = started + 60 + 10 * args.jobs
            jobs: dict[str, dict] = {}
            while pending and time.monotonic() < deadline:
                for job in client.jobs(limit=1000):
                    if job["id"] in pending and job["state"] in FINAL:
                        pending.discard(job["id"])
                        jobs[job["id"]] = job
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            if pending:
                raise SystemExit(f"{label}: {len(pending)} jobs did not finish")
            failed = [j for j in jobs.values() if j["state"] != "completed"]
            if failed:
                raise SystemExit(f"{label}: {len(failed)} jobs did not complete: {failed[0]}")
            turnaround = [j["finishedAt"] - j["createdAt"] for j in jobs.values()]
            queued = [j["startedAt"] - j["createdAt"] for j in jobs.values()]
            run = [j["finishedAt"] - j["startedAt"] for j in jobs.values()]
        except BaseException:
            print(f"{label}: the server's log ends with:\n{(work / 'server.log').read_text()[-3000:]}", file=sys.stderr)
            raise
        else:
            return {"label": label, "jobs": args.jobs, "seconds": elapsed, "per_minute": args.jobs / elapsed * 60,
                    "submit": submitted, "turnaround": statistics.median(turnaround),
                    "queued": statistics.median(queued), "run": statistics.median(run)}
        finally:
            client.close()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)
            server.terminate()
            server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="jobs each worker runs at once")
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jobs-per-minute-inputs-") as tmp:
        inputs = Path(tmp) / "inputs"
        write_sample_series(inputs, slices=5, size=32)
        for store in args.stores.split(","):
            if store == "sqlite":
                rows.append(measure("SQLite", "", args, inputs))
            elif store == "postgresql":
                from postgres import ThrowawayPostgres, binaries

                if binaries() is None:
                    print("PostgreSQL: skipped (no binaries in /usr/lib/postgresql/*/bin)")
                    continue
                pg = ThrowawayPostgres.start()
                try:
                    rows.append(measure("PostgreSQL", pg.create_database(), args, inputs))
                finally:
                    pg.stop()
    print(f"{args.jobs} jobs of trivial_app.py, {args.workers} workers x concurrency {args.concurrency}, "
          f"{os.cpu_count()} cores")
    print(f"{'store':<11} {'jobs/min':>9} {'total s':>8} {'submit s':>9} {'median turnaround s':>20} "
          f"{'median queued s':>16} {'median run s':>13}")
    for r in rows:
        print(f"{r['label']:<11} {r['per_minute']:9.1f} {r['seconds']:8.1f} {r['submit']:9.2f} "
              f"{r['turnaround']:20.2f} {r['queued']:16.2f} {r['run']:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
