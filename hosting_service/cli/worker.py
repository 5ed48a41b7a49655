"""dicom-host worker: run the jobs of a server's queue on this machine.

    dicom-host worker --server URL [--concurrency N] [--name NAME] [--apps a,b]

The worker leases jobs through the server's admin API (it holds no database credentials and needs no
access to the server's disk), runs each with the same orchestration as ``dicom-host run`` (the app's command
from the server's registry, its inputs offered by the server, its outputs received), uploads the results
folder (the objects, manifest.json, app.log) and finishes the job with its result. Each job's lease is
renewed while it runs; a job whose lease is lost (the server gave up on this worker) has its application
killed at once.

SIGTERM, SIGHUP or Ctrl-C: stop leasing, cancel the running jobs gracefully (SetState(CANCELED), IDLE,
EXIT), finish them as canceled, and exit with status 0; a second one kills their applications. If the
worker itself is killed (SIGKILL), its applications die with it and the server re-queues or fails its jobs
once their leases expire.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from hosting_service.cli.exits import EXIT_OK, EXIT_SERVER, EXIT_USAGE
from hosting_service.cli.server_args import TokenError, add_server_arguments, admin_token
from hosting_service.config import ENV_PREFIX
from hosting_service.logs import LOG_FORMATS, configure_logging

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, got {text!r}")
    return value


def _apps(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one app name or more, separated by commas")
    return names


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="lease and run the jobs of a server's queue", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(p)
    p.add_argument("--concurrency", type=_count, default=1, metavar="N", help="jobs run at once (default 1)")
    p.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}",
                   help="this worker's name, recorded with its jobs (default HOST-PID)")
    p.add_argument("--apps", type=_apps, metavar="A,B", help="run only jobs of these apps (default: any)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="what the worker logs on stderr (default info)")
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   help="log lines as text or as JSON objects carrying job_id (default $DICOM_HOST_LOG_FORMAT, "
                        "else text)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from hosting_service.orchestration.jobworker import JobWorker, WorkerOptions  # not for every dicom-host command

    try:
        token = admin_token(args)
        options = WorkerOptions(server=args.server, name=args.name, admin_token=token,
                                concurrency=args.concurrency, apps=args.apps)
        worker = JobWorker(options)
    except (ValueError, TokenError) as exc:
        print(f"dicom-host worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_format or os.environ.get(ENV_PREFIX + "LOG_FORMAT") or "text")
    logging.getLogger("dicom_host").setLevel(args.log_level.upper())  # the libraries' warnings only
    previous = {sig: signal.signal(sig, lambda signum, frame: worker.stop()) for sig in STOP_SIGNALS}
    try:
        refused = worker.run()
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
    if refused is None:
        return EXIT_OK
    print(f"dicom-host worker: the server refuses to lease jobs: {refused}", file=sys.stderr)
    return EXIT_SERVER if refused.status in (401, 403, 404) else EXIT_USAGE
