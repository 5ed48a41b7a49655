"""What ``dicom-host run`` costs a job, against the same application without a host, in the same run.

    python bench/job_overhead.py [--rounds 10] [--cold-rounds 3]

Each round times, as wall clock of whole processes:

* ``hosted``: ``dicom-host run --server URL`` (a server already running) with ``trivial_app.py``: IDLE,
  INPROGRESS, 10 inputs fetched with GetData, one output, COMPLETED, IDLE, EXIT;
* ``standalone``: the same ``trivial_app.py`` process started and ended without a host, reading the same
  10 files and writing the same output;
* ``cold`` (``--cold-rounds``): ``dicom-host run`` that also starts and stops its own server.

Prints the medians, the host's overhead per job in ms and the ratio (target: <= 250 ms per job), the
SetState -> notification-seen round trip p50 over every state change of every hosted run (target <= 10
ms; each run's manifest.json records them), and where a hosted run's time goes (its manifest's milestones).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hosting_service.dicom.samples import write_sample_series  # noqa: E402
from hosting_service.orchestration.server import EmbeddedServer  # noqa: E402

APP = f"{sys.executable} {HERE / 'trivial_app.py'}"
DICOM_HOST = [sys.executable, "-m", "hosting_service.cli.main", "run"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def hosted_run(inputs: Path, output: Path, server: EmbeddedServer | None) -> tuple[float, dict]:
    argv = [*DICOM_HOST, "--app", APP, "--input", str(inputs), "--output", str(output)]
    if server is not None:
        argv += ["--server", server.url, "--admin-token", server.admin_token]
    seconds = timed(argv)
    return seconds, json.loads((output / "manifest.json").read_text())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cold-rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="job-overhead-") as tmp:
        work = Path(tmp)
        inputs = work / "inputs"
        write_sample_series(inputs, slices=10, size=64)
        hosted: list[float] = []
        standalone: list[float] = []
        cold: list[float] = []
        manifests: list[dict] = []
        with EmbeddedServer(data_dir=work / "server") as server:
            hosted_run(inputs, work / "warm-up", server)  # the server's workers import pydicom once
            timed([sys.executable, str(HERE / "trivial_app.py"), "--standalone", str(inputs), str(work / "w.json")])
            for n in range(args.rounds):
                seconds, manifest = hosted_run(inputs, work / f"hosted-{n}", server)
                hosted.append(seconds)
                manifests.append(manifest)
                standalone.append(timed([sys.executable, str(HERE / "trivial_app.py"), "--standalone", str(inputs),
                                         str(work / f"standalone-{n}.json")]))
        for n in range(args.cold_rounds):
            cold.append(hosted_run(inputs, work / f"cold-{n}", None)[0])

    base = statistics.median(standalone)
    warm = statistics.median(hosted)
    print(f"standalone app (no host)      median {ms(base)}  ({len(standalone)} runs)")
    print(f"dicom-host run --server URL   median {ms(warm)}  overhead {ms(warm - base)} per job, "
          f"ratio {warm / base:.2f}x  (target overhead <= 250 ms)")
    if cold:
        median_cold = statistics.median(cold)
        print(f"dicom-host run (own server)   median {ms(median_cold)}  overhead {ms(median_cold - base)}, "
              f"ratio {median_cold / base:.2f}x")
    trips = [t["ms"] for m in manifests for t in m["timings"]["stateRoundTrips"]]
    print(f"SetState -> notification seen p50 {statistics.median(trips):.1f} ms, max {max(trips):.1f} ms "
          f"over {len(trips)} state changes  (target p50 <= 10 ms)")
    print("where a hosted run's time goes (median seconds since the run started, after its imports):")
    milestones = [k for k, v in manifests[0]["timings"].items() if isinstance(v, (int, float))]
    for name in milestones:
        print(f"  {name:<16} {statistics.median(m['timings'][name] for m in manifests):.3f}")
    for name in manifests[0]["tasks"][0]["timings"]:
        print(f"  task.{name:<11} {statistics.median(m['tasks'][0]['timings'][name] for m in manifests):.3f}"
              " (since the task started)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
