"""``dicom-host submit``, ``jobs``, ``job show`` and ``cancel``: jobs on a running server, through its admin API.

    dicom-host submit --server URL --app NAME --input FILES_OR_FOLDERS... [--option K=V]... [--wait] [--output DIR]

``submit`` uploads the inputs with the job (a tar stream, every file's SHA-256 checked by the server), so
the server needs no access to this machine's disk; the job waits in the queue until a ``dicom-host worker``
leases it. Without --wait it prints the queued job (JSON) and exits. With --wait it shows the job's progress
(its state changes, then its application's events, as ``run`` does) until the job ends, and exits with the
status ``run`` would have: 0 completed, 2 bad usage, 3 server unreachable or refusing (or the worker gone),
4 the application failed, 5 a timeout, 6 canceled, 70 an internal error of dicom-host. With --output DIR
(implies --wait) the job's results (the objects, manifest.json, app.log) are written to DIR under the same
rules as ``run --output``: DIR is new, empty or an earlier run's, and is replaced only when the job completed.

Ctrl-C (or SIGTERM, SIGHUP) while waiting asks the server to cancel the job; a second one stops waiting.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from hosting_service.admin.client import AdminError
from hosting_service.cli.exits import (
    EXIT_CANCELED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_USAGE,
)
from hosting_service.cli.run import EXIT_CODES
from hosting_service.cli.server_args import TokenError, add_server_arguments, admin_token
from hosting_service.orchestration.destination import Destination, DestinationError
from hosting_service.orchestration.manifest import MANIFEST_NAME
from hosting_service.orchestration.outcome import Result
from hosting_service.orchestration.progress import Reporter

if TYPE_CHECKING:  # loaded when a job command runs, not by every dicom-host command
    from hosting_service.admin.jobs_client import JobsClient

JOB_STATES = ("queued", "running", "completed", "failed", "canceled")
FINAL_STATES = frozenset({"completed", "failed", "canceled"})
QUEUED_POLL_SECONDS = 5.0
"""Longest long poll of the job's events while it has no instance yet."""
INSTANCE_POLL_SECONDS = 1.0
"""Longest long poll of the instance's events while the job runs (the job's state is looked at after each)."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MAX_LIST = 1000
"""Most jobs one listing of the API returns."""


def add_parser(sub) -> None:
    s = sub.add_parser("submit", help="submit a job: an app of the server's registry, with inputs uploaded",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_arguments(s)
    s.add_argument("--app", required=True, metavar="NAME", help="the app's name in the server's registry (serve --apps)")
    s.add_argument("--input", required=True, nargs="+", type=Path, action="extend", metavar="PATH",
                   help="files or folders, uploaded with the job")
    s.add_argument("--option", action="append", default=[], metavar="K=V", type=_option,
                   help="a job option (task_per, output_semantics, file_uris, label, output_models, "
                   "trust_app_uris); V is read as JSON when it can be (true, 3), else as text")
    s.add_argument("--wait", action="store_true", help="follow the job to its end; exit as run would")
    s.add_argument("--output", type=Path, metavar="DIR",
                   help="write the job's results here (implies --wait): new, empty, or an earlier run's folder "
                   "(replaced once the job completed)")
    s.add_argument("--json", action="store_true", help="with --wait: the job's and its instance's events as "
                   "JSON lines on stdout")
    s.set_defaults(handler=submit)

    ls = sub.add_parser("jobs", help="list the jobs of a server (newest first)",
                        description="List the jobs of a server, newest first.")
    add_server_arguments(ls)
    ls.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    ls.add_argument("--limit", type=_limit, default=100, metavar="N", help="at most N jobs (default 100, at most 1000)")
    ls.add_argument("--json", action="store_true", help="print the answer as JSON")
    ls.set_defaults(handler=lambda args: _call(args, "jobs", _list))

    j = sub.add_parser("job", help="show one job", description="Show one job: its state, events and manifest.")
    jsub = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = jsub.add_parser("show", help="a job's state, events and manifest",
                           description="A job's state, attempts, events and results manifest.")
    show.add_argument("id", help="job id")
    add_server_arguments(show)
    show.add_argument("--json", action="store_true", help="print the job as JSON")
    show.set_defaults(handler=lambda args: _call(args, "job show", _show))

    c = sub.add_parser("cancel", help="cancel a job",
                       description="Cancel a job: a queued one at once, a running one gracefully (its worker "
                       "cancels the task); a finished one cannot be canceled (exit status 3).")
    c.add_argument("id", help="job id")
    add_server_arguments(c)
    c.set_defaults(handler=lambda args: _call(args, "cancel", _cancel))


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_LIST}, got {text!r}")
    return value


def _option(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _client(args, command: str) -> Optional[JobsClient]:
    from hosting_service.admin.jobs_client import JobsClient

    try:
        return JobsClient(args.server, token=admin_token(args))
    except (ValueError, TokenError) as exc:
        print(f"dicom-host {command}: {exc}", file=sys.stderr)
        return None


def _call(args, command: str, handler: Callable[[JobsClient, Any], int]) -> int:
    client = _client(args, command)
    if client is None:
        return EXIT_USAGE
    try:
        return handler(client, args)
    except AdminError as exc:
        print(f"dicom-host {command}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    finally:
        client.close()


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _list(client: JobsClient, args) -> int:
    jobs = client.jobs(state=args.state, limit=args.limit)
    if args.json:
        _print_json(jobs)
        return EXIT_OK
    rows = [("ID", "APP", "STATE", "RESULT", "CREATED", "WORKER")]
    rows += [(j["id"], j["app"], j["state"], j.get("result") or "-", _when(j.get("createdAt")), j.get("worker") or "-")
             for j in jobs]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return EXIT_OK


def _show(client: JobsClient, args) -> int:
    job = client.job(args.id)
    if args.json:
        _print_json(job)
        return EXIT_OK
    inputs = job.get("inputs") or {}
    for label, value in (("job", job["id"]), ("app", job["app"]), ("state", job["state"]),
                         ("result", job.get("result")), ("reason", job.get("reason")),
                         ("attempts", f"{job.get('attempts')} of {job.get('maxAttempts')}"),
                         ("worker", job.get("worker")), ("instance", job.get("instanceId")),
                         ("inputs", f"{inputs.get('count')} files, {inputs.get('bytes')} bytes"),
                         ("created", _when(job.get("createdAt"))), ("started", _when(job.get("startedAt"))),
                         ("finished", _when(job.get("finishedAt"))),
                         ("cancel requested", "yes" if job.get("cancelRequested") else None)):
        if value is not None:
            print(f"{label + ':':<18}{value}")
    manifest = job.get("manifest")
    if manifest:
        outputs = manifest.get("outputs") or []
        print(f"{'outputs:':<18}{len(outputs)}")
        for entry in outputs:
            print(f"  {entry.get('file') or '-'}  {entry.get('size')} bytes  {entry.get('status')}")
    print("events:")
    for event in job.get("events") or []:
        print(f"  {event['seq']:>4} {_when(event['at'])} {event['kind']} {json.dumps(event.get('data') or {})}")
    return EXIT_OK


def _cancel(client: JobsClient, args) -> int:
    job = client.cancel(args.id)
    if job["state"] == "canceled":
        print(f"job {job['id']}: canceled")
    else:
        print(f"job {job['id']}: cancel requested (its worker cancels the running task)")
    return EXIT_OK


# --- submit ---------------------------------------------------------------------------------------------

def submit(args) -> int:
    client = _client(args, "submit")
    if client is None:
        return EXIT_USAGE
    try:
        return _submit(client, args)
    finally:
        client.close()


def _submit(client: JobsClient, args) -> int:
    missing = [str(p) for p in args.input if not p.exists()]
    if missing:
        return _usage(f"input not found: {', '.join(missing)}")
    destination: Optional[Destination] = None
    if args.output is not None:
        try:
            destination = Destination.prepare(args.output)
        except DestinationError as exc:
            return _usage(str(exc))
    try:
        job = client.submit(args.app, args.input, dict(args.option))
    except KeyboardInterrupt:  # while uploading: nothing was queued
        _abandon(destination)
        raise
    except ValueError as exc:
        _abandon(destination)
        return _usage(str(exc))
    except OSError as exc:  # an input that cannot be read (while it is hashed)
        _abandon(destination)
        return _usage(f"cannot read {exc.filename or 'an input'}: {exc.strerror or exc}")
    except AdminError as exc:
        _abandon(destination)
        print(f"dicom-host submit: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403) \
            else EXIT_SERVER
    if not (args.wait or destination is not None):
        _print_json(job)
        return EXIT_OK
    terminal = sys.stderr if sys.stderr.isatty() else None
    reporter = Reporter(json_stream=sys.stdout if args.json else None, terminal=terminal,
                        alerts=None if terminal else sys.stderr, command="dicom-host submit")
    reporter.emit("job", {"kind": "submitted", "data": {"id": job["id"], "app": job["app"]}})
    follower = Follower(client, job["id"], reporter)
    previous = {sig: signal.signal(sig, follower.interrupt) for sig in STOP_SIGNALS}
    try:
        final = follower.follow()
    except AdminError as exc:
        reporter.close()
        _abandon(destination)
        print(f"dicom-host submit: job {follower.job_id}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
    reporter.close()
    if final is None:
        _abandon(destination)
        print(f"dicom-host submit: stopped waiting; job {follower.job_id} is being canceled", file=sys.stderr)
        return EXIT_CANCELED
    return _conclude(client, final, destination, args)


def _exit_status(result: str) -> int:
    """A finished job's ``result`` (a :class:`Result` value) as ``run``'s exit status for that result."""
    try:
        return EXIT_CODES[Result(result)]
    except ValueError:
        return EXIT_INTERNAL


def _conclude(client: JobsClient, job: dict, destination: Optional[Destination], args) -> int:
    result = job.get("result") or ("canceled" if job["state"] == "canceled" else "server")
    status = EXIT_OK if job["state"] == "completed" else _exit_status(result)
    reason = job.get("reason") or result
    summary = ""
    if destination is not None:
        try:
            names = client.download_results(job["id"], destination.folder)
        except AdminError as exc:
            names = []
            if exc.status != 409:  # 409: the job has no results (it never ran)
                print(f"dicom-host submit: the results could not be fetched: {exc}", file=sys.stderr)
                status = status or EXIT_SERVER
        if status == EXIT_OK:
            try:
                destination.complete()
                reason = _summary(destination.folder)
            except DestinationError as exc:
                reason = f"{_summary(destination.folder)}; but {exc}"
        elif not names:
            destination.abandon()
        else:
            summary = f"; its manifest.json and app.log are in {destination.folder}"
    line = f"dicom-host submit: job {job['id']} {job['state']}: {reason}{summary}"
    if status == EXIT_OK:
        if not args.json:
            print(line)
    else:
        print(line, file=sys.stderr)
    return status


def _summary(folder: Path) -> str:
    """What a completed job left in ``folder``, for the last line."""
    try:
        outputs = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("outputs") or []
    except (OSError, ValueError, AttributeError):
        return f"results in {folder}"
    received = sum(1 for o in outputs if o.get("status") == "received")
    refused = len(outputs) - received
    return (f"{received} object{'s' if received != 1 else ''} in {folder}"
            + (f"; {refused} refused (see the warnings in {folder / MANIFEST_NAME})" if refused else ""))


def _usage(message: str) -> int:
    print(f"dicom-host submit: {message}", file=sys.stderr)
    return EXIT_USAGE


def _abandon(destination: Optional[Destination]) -> None:
    if destination is not None:
        destination.abandon()


class Follower:
    """Follows a job to its end: its own events, and its instance's (a retried job gets a new instance)."""

    def __init__(self, client: JobsClient, job_id: str, reporter: Reporter):
        self.client = client
        self.job_id = job_id
        self.reporter = reporter
        self.interrupts = 0
        self._cancel_sent = False
        self._job_after = 0
        self._instance: Optional[str] = None
        self._instance_after = 0

    def interrupt(self, signum, frame) -> None:
        """A signal handler: the first asks for the job's cancel, the second stops the waiting."""
        self.interrupts += 1

    def follow(self) -> Optional[dict]:
        """The finished job; ``None`` when the waiting was interrupted twice."""
        while True:
            if self.interrupts >= 2:
                return None
            if self.interrupts and not self._cancel_sent:
                self._cancel_sent = True
                self.reporter.emit("notice", {"message": "canceling the job (interrupt again to stop waiting)"})
                try:
                    self.client.cancel(self.job_id)
                except AdminError as exc:
                    if exc.status != 409:  # 409: it has finished meanwhile
                        raise
            events, self._job_after = self.client.job_events(
                self.job_id, after=self._job_after, wait=0 if self._instance else QUEUED_POLL_SECONDS)
            for event in events:
                self.reporter.emit("job", {"kind": event["kind"], "data": event.get("data") or {}})
            job = self.client.job(self.job_id)
            if job.get("instanceId") and job["instanceId"] != self._instance:
                self._instance, self._instance_after = job["instanceId"], 0
            if job["state"] in FINAL_STATES:
                if self._instance:
                    self._instance_events(0)
                return job
            if self._instance:
                self._instance_events(INSTANCE_POLL_SECONDS)

    def _instance_events(self, wait: float) -> None:
        assert self._instance is not None
        events, self._instance_after = self.client.events(self._instance, after=self._instance_after, wait=wait)
        for event in events:
            kind, data = event["kind"], event.get("data") or {}
            if kind == "log":  # the runner sends the application's lines in batches
                for line in data.get("lines") or []:
                    self.reporter.emit("log", line)
            elif kind == "inputs":  # the server's record of the offer: what run's own "offered" says
                self.reporter.emit("offered", data)
            else:
                self.reporter.emit(kind, data)
