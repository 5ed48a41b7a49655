"""``dicom-host conformance``: PS3.19 conformance tests of a hosted application (``app``) or of a Hosting
System (``host``, itself a hosted application that the host under test launches).

Exit status: 0 when no required scenario failed, 1 when one did, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from hosting_service.cli.exits import EXIT_USAGE
from hosting_service.conformance import reports
from hosting_service.conformance.verdicts import failed_required

EXIT_FAILED = 1
"""``conformance app``: a required scenario failed."""


def add_parser(sub) -> None:
    p = sub.add_parser("conformance", help="test a hosted application or a Hosting System against PS3.19",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    a = csub.add_parser("app", help="launch an application once per scenario under a scripted host and judge it",
                        description="Launch the application once per scenario, as a host does (COMMAND [ARGS] "
                                    "--hostURL U1 --applicationURL U2 [APP_ARGS]), drive it from a scripted host "
                                    "that records the wire, and report a verdict per scenario.")
    a.add_argument("--app", metavar="COMMAND", help="the command that starts the application (split like a shell, never run by one)")
    a.add_argument("app_args", nargs="*", metavar="APP_ARGS", help="arguments after the two URLs (after --)")
    a.add_argument("--inputs", type=Path, metavar="DIR", help="objects to offer (default: a small generated CT series)")
    a.add_argument("--only", metavar="ID,...", help="run only these scenarios")
    a.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a.add_argument("--report-dir", type=Path, metavar="DIR",
                   help=f"also write the reports there ({', '.join(reports.FILE_NAMES.values())})")
    a.add_argument("--format", choices=reports.FORMATS, default="text", help="the report printed on stdout (default text)")
    a.add_argument("--jobs", type=int, default=1, metavar="N", help="scenarios run at once (default 1)")
    a.add_argument("--budget", type=float, default=60.0, metavar="S", help="hard limit on one scenario (default 60)")
    a.add_argument("--startup-timeout", type=float, default=20.0, metavar="S", help="wait for the first IDLE (default 20)")
    a.add_argument("--state-timeout", type=float, default=10.0, metavar="S", help="wait for a requested state (default 10)")
    a.add_argument("--task-timeout", type=float, default=30.0, metavar="S", help="wait for a task to end (default 30)")
    a.set_defaults(handler=_app)
    h = csub.add_parser("host", prefix_chars="+", add_help=False,
                        help="a conformance application: launch it from the host under test",
                        description="Run as a hosted application (--hostURL U1 --applicationURL U2, any case); "
                                    "probe the host's HostService from inside a task; hand back the reports as outputs.")
    h.add_argument("launch", nargs="*", help="the launch arguments (--hostURL U1 --applicationURL U2 ...; -h for help)")
    h.set_defaults(handler=_host)


def _app(args) -> int:
    from hosting_service.conformance.app_scenarios import BY_ID, SCENARIOS
    from hosting_service.conformance.app_suite import AppOptions, run_suite

    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.id:22} {scenario.clause:40} {scenario.title}")
        return 0
    if not args.app:
        print("dicom-host conformance app: --app COMMAND is required", file=sys.stderr)
        return EXIT_USAGE
    scenarios = SCENARIOS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in BY_ID]
        if unknown:
            print(f"dicom-host conformance app: unknown scenario {', '.join(unknown)} (see --list)", file=sys.stderr)
            return EXIT_USAGE
        scenarios = [BY_ID[w] for w in wanted]
    if args.inputs is not None and not args.inputs.exists():
        print(f"dicom-host conformance app: --inputs {args.inputs}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # ends the run as Ctrl-C does, applications killed
    options = AppOptions(args.app, list(args.app_args), startup_timeout=args.startup_timeout,
                         state_timeout=args.state_timeout, task_timeout=args.task_timeout, budget=args.budget)
    try:
        results = run_suite(scenarios, options, args.inputs, jobs=args.jobs)
    except ValueError as exc:
        print(f"dicom-host conformance app: {exc}", file=sys.stderr)
        return EXIT_USAGE
    suite = f"application {args.app}"
    if args.report_dir is not None:
        reports.write_all(args.report_dir, suite, results)
    sys.stdout.write(reports.WRITERS[args.format](suite, results))
    return EXIT_FAILED if failed_required(results) else 0


def _host(args) -> int:
    from hosting_service.conformance.host_probe import ConformanceProbe

    return ConformanceProbe.main(args.launch)
