"""dicom-host run: run a hosted application on DICOM inputs and collect its results.

    dicom-host run --app "COMMAND [ARGS]" --input FILE_OR_FOLDER... --output DIR [-- APP_ARGS...]

The application is started as "COMMAND [ARGS] --hostURL U1 --applicationURL U2 [APP_ARGS]" (no shell is
involved), given the inputs in one task (or one per patient, study or series with --task-per), and its
results are written to DIR with a manifest.json. Without --server a Hosting System server is started on
a free loopback port for the length of the run.

DIR may be new, empty, or the folder of an earlier run (it holds that run's manifest.json): the new results
replace the earlier ones once the run completes; a failed run leaves them as they were and keeps its own
manifest.json and app.log in DIR.run-<time>.

The host reads the application's outputs only from the instance's output locations and from the
application's own endpoint; other URIs are refused with a warning (--trust-app-uris reads them).

Ctrl-C (or SIGTERM, SIGHUP) cancels the task (SetState(CANCELED), then IDLE, then EXIT); a second one
aborts the application at once. The application and the server the run started end with the run, even
when it is killed. Exit status: 0 completed, 2 bad usage, 3 server unreachable or refusing, 4 the
application failed (crash, FATALERROR, refusal, protocol error), 5 a timeout, 6 canceled, 70 an internal
error of dicom-host.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections import deque
from pathlib import Path

from hosting_service.cli.exits import (
    EXIT_APP_FAILED,
    EXIT_CANCELED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from hosting_service.cli.server_args import TokenError, add_token_arguments, admin_token
from hosting_service.config import OUTPUT_SEMANTICS, Settings
from hosting_service.orchestration.options import RunOptions
from hosting_service.orchestration.outcome import Outcome, Result
from hosting_service.orchestration.progress import Reporter
from hosting_service.orchestration.runner import Runner
from hosting_service.orchestration.tasks import TASK_SCOPES
from hosting_service.orchestration.tempdirs import remove_stale

EXIT_CODES = {
    Result.COMPLETED: EXIT_OK,
    Result.USAGE: EXIT_USAGE,
    Result.SERVER: EXIT_SERVER,
    Result.APP_FAILED: EXIT_APP_FAILED,
    Result.TIMEOUT: EXIT_TIMEOUT,
    Result.CANCELED: EXIT_CANCELED,
    Result.INTERNAL: EXIT_INTERNAL,
}
APP_LOG_TAIL = 5
"""Lines of app.log shown under a failure of the application."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each cancels the job (the first) or aborts the application (the second): a closed terminal too."""


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
                   help="folder for the results, manifest.json and app.log: new, empty, or an earlier run's "
                   "(replaced once this run completes)")
    p.add_argument("app_args", nargs="*", metavar="APP_ARGS",
                   help="after --: more arguments for the application, after the two URLs")
    p.add_argument("--task-per", choices=TASK_SCOPES, default=defaults.task_per,
                   help="one task for all inputs (default), or one per patient, study or series")
    p.add_argument("--server", metavar="URL", help="use this running server instead of starting one")
    add_token_arguments(p)
    p.add_argument("--lease", type=_seconds, metavar="S", default=defaults.instance_lease,
                   help="with --server: the instance's lease, renewed every S/3 seconds while the run goes; the "
                   f"server ends the instance of a run that is gone (default {defaults.instance_lease:g})")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="data dir of the server started for this run "
                   "(default: a temporary one, removed at the end)")
    p.add_argument("--output-semantics", choices=OUTPUT_SEMANTICS,
                   help="what the application's output locations are: a folder (the server's default) or one "
                   "file (for applications such as XIP's RECIST that write the location itself)")
    p.add_argument("--trust-app-uris", action="store_true", default=None,
                   help="read outputs from any file:, http: or https: URI the application hands back, not only "
                   "from its output locations and its own endpoint (trusted applications on this machine only; "
                   "default from DICOM_HOST_TRUST_APP_URIS)")
    p.add_argument("--file-uris", action=argparse.BooleanOptionalAction, default=None,
                   help="may the application be given file: URIs (inputs, output locations)? --no-file-uris "
                   "for an application that does not share the server's filesystem: inputs and outputs go "
                   "over http: (default: the server's DICOM_HOST_FILE_URIS, itself default yes)")
    p.add_argument("--output-models", action="store_true",
                   help="also save each output's Native DICOM Model, read through the application's model "
                   "interface (GetAsModels, QueryModel), as models/UUID.xml in the output folder")
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
    try:
        trust_app_uris = args.trust_app_uris or Settings.from_env().trust_app_uris
        token = admin_token(args) if args.server else None
    except (ValueError, TokenError) as exc:
        print(f"dicom-host run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = RunOptions(
        app=args.app, inputs=args.input, output=args.output, app_args=args.app_args, server=args.server,
        admin_token=token, data_dir=args.data_dir, task_per=args.task_per, batch_size=args.batch_size,
        startup_timeout=args.startup_timeout, state_timeout=args.state_timeout, task_timeout=args.task_timeout,
        call_timeout=args.call_timeout, exit_grace=args.exit_grace, output_semantics=args.output_semantics,
        trust_app_uris=trust_app_uris, output_models=args.output_models, instance_lease=args.lease,
        file_uris=args.file_uris,
    )
    terminal = sys.stderr if sys.stderr.isatty() else None
    reporter = Reporter(json_stream=sys.stdout if args.json else None, terminal=terminal,
                        alerts=None if terminal else sys.stderr)
    remove_stale()  # the temporary data dirs of earlier runs that were killed
    runner = Runner(options, reporter)
    handler = _interrupt_handler(runner)  # one count for every stop signal together
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
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
        if outcome.result in (Result.APP_FAILED, Result.TIMEOUT):
            _point_to_app_log(outcome)
    # Everything is finished: the application reaped, the instance ended, the manifest written. Leave
    # without the interpreter's teardown of zeep, spyne and lxml, which would add some 40 ms to every job.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(EXIT_CODES[outcome.result])


def _point_to_app_log(outcome: Outcome) -> None:
    """Under an application's failure: where its output is, and its last lines."""
    if outcome.app_log is None:
        return
    tail = _last_lines(outcome.app_log, APP_LOG_TAIL)
    if not tail:
        print(f"  the application wrote nothing; its log: {outcome.app_log}", file=sys.stderr)
        return
    print(f"  the application's output is in {outcome.app_log}; its last lines:", file=sys.stderr)
    for line in tail:
        print(f"  | {line}", file=sys.stderr)


def _last_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(deque((line.rstrip("\n") for line in f if line.strip()), maxlen=count))
    except OSError:
        return []


def _interrupt_handler(runner: Runner):
    """First interrupt (SIGINT, SIGTERM or SIGHUP): cancel gracefully. Second: raise KeyboardInterrupt, which aborts the application.
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
