"""``dicom-host run``: run a hosted application on DICOM inputs and collect its results.

    dicom-host run --app "COMMAND [ARGS]" --input FILE_OR_FOLDER... --output DIR [-- APP_ARGS...]

The application is started as ``COMMAND [ARGS] --hostURL U1 --applicationURL U2 [APP_ARGS]`` (no shell is
involved), given the inputs in one task (or one per patient, study or series with ``--task-per``), and its
results are written to DIR with a manifest.json. Without ``--server`` a Hosting System server is started on
a free loopback port for the length of the run.

Ctrl-C cancels the task (SetState(CANCELED), then IDLE, then EXIT); a second Ctrl-C aborts the application
at once. Exit status: 0 completed, 2 bad usage, 3 server unreachable or refusing, 4 the application failed
(crash, FATALERROR, refusal, protocol error), 5 a timeout, 6 canceled, 70 an internal error of dicom-host.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from hosting_service.orchestration.progress import Reporter
from hosting_service.orchestration.runner import Result, Runner, RunOptions
from hosting_service.orchestration.tasks import TASK_SCOPES

EXIT_APP_FAILED = 4
EXIT_TIMEOUT = 5
EXIT_CANCELED = 6
EXIT_INTERNAL = 70  # EX_SOFTWARE: a defect of dicom-host itself


def exit_code(result: Result) -> int:
    from hosting_service.cli.main import EXIT_SERVER, EXIT_USAGE

    return {
        Result.COMPLETED: 0,
        Result.USAGE: EXIT_USAGE,
        Result.SERVER: EXIT_SERVER,
        Result.APP_FAILED: EXIT_APP_FAILED,
        Result.TIMEOUT: EXIT_TIMEOUT,
        Result.CANCELED: EXIT_CANCELED,
        Result.INTERNAL: EXIT_INTERNAL,
    }[result]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def add_parser(sub) -> None:
    defaults = RunOptions(app="", inputs=[], output=Path())
    p = sub.add_parser("run", help="run a hosted application on DICOM inputs and collect its results",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app", required=True, metavar="COMMAND",
                   help='the command that starts the application, e.g. "python -m client.examples.mip_app"')
    p.add_argument("--input", required=True, nargs="+", type=Path, action="extend", metavar="PATH",
                   help="DICOM files or folders (other files are offered with their MIME type)")
    p.add_argument("--output", required=True, type=Path, metavar="DIR",
                   help="new or empty folder for the results, manifest.json and app.log")
    p.add_argument("app_args", nargs="*", metavar="APP_ARGS",
                   help="after --: more arguments for the application, after the two URLs")
    p.add_argument("--task-per", choices=TASK_SCOPES, default=defaults.task_per,
                   help="one task for all inputs (default), or one per patient, study or series")
    p.add_argument("--server", metavar="URL", help="use this running server instead of starting one")
    p.add_argument("--admin-token", metavar="TOKEN", help="bearer token of the server's admin API, when it requires one")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="data dir of the server started for this run "
                   "(default: a temporary one, removed at the end)")
    p.add_argument("--output-semantics", choices=["directory", "file"],
                   help="what the application's output locations are: a folder (the server's default) or one "
                   "file (for applications such as XIP's RECIST that write the location itself)")
    p.add_argument("--json", action="store_true", help="write the run's events to stdout as JSON lines")
    timeouts = p.add_argument_group("timeouts (seconds)")
    timeouts.add_argument("--startup-timeout", type=_seconds, metavar="S", default=defaults.startup_timeout,
                          help=f"for the application's first IDLE (default {defaults.startup_timeout:g})")
    timeouts.add_argument("--state-timeout", type=_seconds, metavar="S", default=defaults.state_timeout,
                          help=f"for each state change the host asks for (default {defaults.state_timeout:g})")
    timeouts.add_argument("--task-timeout", type=_seconds, metavar="S", default=defaults.task_timeout,
                          help=f"for each task to complete (default {defaults.task_timeout:g})")
    timeouts.add_argument("--call-timeout", type=_seconds, metavar="S", default=defaults.call_timeout,
                          help=f"for each call to the application or the server (default {defaults.call_timeout:g})")
    timeouts.add_argument("--exit-grace", type=_seconds, metavar="S", default=defaults.exit_grace,
                          help="for the process to end after EXIT, before it is killed "
                          f"(default {defaults.exit_grace:g})")
    p.add_argument("--batch-size", type=_positive, default=defaults.batch_size, metavar="N",
                   help=f"most objects in one NotifyDataAvailable call (default {defaults.batch_size})")
    p.set_defaults(handler=run)


def run(args) -> int:
    options = RunOptions(
        app=args.app, inputs=args.input, output=args.output, app_args=args.app_args, server=args.server,
        admin_token=args.admin_token, data_dir=args.data_dir, task_per=args.task_per, batch_size=args.batch_size,
        startup_timeout=args.startup_timeout, state_timeout=args.state_timeout, task_timeout=args.task_timeout,
        call_timeout=args.call_timeout, exit_grace=args.exit_grace, output_semantics=args.output_semantics,
    )
    reporter = Reporter(json_stream=sys.stdout if args.json else None,
                        terminal=sys.stderr if sys.stderr.isatty() else None)
    runner = Runner(options, reporter)
    handler = _interrupt_handler(runner)  # one count for Ctrl-C and SIGTERM together
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        outcome = runner.run()
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
        reporter.close()
    if outcome.result is Result.COMPLETED:
        if not args.json:
            print(f"dicom-host run: {outcome.result.value}: {outcome.reason}")
    else:
        print(f"dicom-host run: {outcome.result.value}: {outcome.reason}", file=sys.stderr)
    # Everything is finished: the application reaped, the instance ended, the manifest written. Leave
    # without the interpreter's teardown of zeep, spyne and lxml, which would add some 40 ms to every job.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(exit_code(outcome.result))


def _interrupt_handler(runner: Runner):
    """First interrupt: cancel gracefully. Second: raise KeyboardInterrupt, which aborts the application.
    Later ones are ignored, so that they cannot break off the abort and leave the application running."""
    count = 0

    def handle(signum, frame) -> None:
        nonlocal count
        count += 1
        if count == 1:
            runner.cancel_requested.set()
        elif count == 2:
            raise KeyboardInterrupt

    return handle
