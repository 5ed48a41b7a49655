"""How long ``dicom-host conformance app`` takes for the whole application suite against the MIP example
application, and how much of that is the application's time rather than the tool's.

    python bench/conformance.py [--jobs 1] [--rounds 1]

Runs every scenario in this process (as the CLI does), one fresh application launch each. For every
scenario the runner measures the time spent waiting for the application (its start up to the first IDLE,
its answers, its notifications) and the host's deliberate pauses (watching for writes after IDLE, for a
move at COMPLETED; the injected 2 s delay of ``slow-host`` counts as the application's, since the
application is waiting on it). Prints the suite's wall time (target: under 60 s) and, summed over the
scenarios, the application's share, the pauses' share and the tool's own share (the rest: the scripted
host, launching, killing, judging), as seconds and percent of the summed scenario time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hosting_service.conformance.app_scenarios import SCENARIOS  # noqa: E402
from hosting_service.conformance.app_suite import AppOptions, run_suite  # noqa: E402
from hosting_service.conformance.verdicts import Verdict  # noqa: E402

MIP_APP = f"{sys.executable} -m client.examples.mip_app"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1, help="scenarios at once (default 1: the plain serial figure)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the suite this many times")
    args = parser.parse_args()
    for round_number in range(1, args.rounds + 1):
        started = time.perf_counter()
        results = run_suite(SCENARIOS, AppOptions(MIP_APP), jobs=args.jobs)
        wall = time.perf_counter() - started
        failed = [r.id for r in results if r.verdict is Verdict.FAIL]
        if failed:
            raise SystemExit(f"the MIP app failed {', '.join(failed)}: the figure would be meaningless")
        total = sum(r.seconds for r in results)
        application = sum(r.timings.get("application", 0.0) for r in results)
        pauses = sum(r.timings.get("pauses", 0.0) for r in results)
        tool = total - application - pauses
        print(f"round {round_number}: {len(results)} scenarios, jobs={args.jobs}: wall {wall:.1f} s (target < 60 s)")
        print(f"  scenario time {total:.1f} s = application {application:.1f} s ({100 * application / total:.0f} %)"
              f" + deliberate pauses {pauses:.1f} s ({100 * pauses / total:.0f} %)"
              f" + tool {tool:.1f} s ({100 * tool / total:.0f} %)")
        slowest = sorted(results, key=lambda r: r.seconds, reverse=True)[:3]
        print("  slowest: " + ", ".join(f"{r.id} {r.seconds:.1f} s" for r in slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
