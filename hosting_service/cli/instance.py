"""``dicom-host instance ...``: create, inspect, feed, follow and end hosted-application instances on a
running server, through its admin API. Answers are printed as JSON (``events --follow``: one JSON object
per line, as the events happen).

``instance end`` first asks a running application to leave: SetState(EXIT) over its ApplicationService
when PS3.19 Table 7.2-2 allows the host to ask for EXIT from the state it last reported (IDLE), then it
waits for its EXIT notification. It cannot stop a process it did not start: when the application does
not follow, it says so (with the application's URL) and exits with status 4; the instance is ended in
every case.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.cli.exits import EXIT_APP_FAILED, EXIT_SERVER, EXIT_USAGE
from hosting_service.cli.server_args import TokenError, add_server_arguments, admin_token
from hosting_service.config import OUTPUT_SEMANTICS
from hosting_service.model import to_jsonable
from hosting_service.states import State, host_may_request, parse_state

EXIT_APP_RUNNING = EXIT_APP_FAILED
"""``instance end``: the instance ended, but the application may still be running (the status ``run``
uses for an application that does not do what it is asked)."""
FOLLOW_POLL_SECONDS = 25.0
"""Longest single long poll of ``events --follow`` (the admin API caps a wait at 60 s)."""


@dataclass
class Answer:
    """What a subcommand prints (as JSON on stdout, unless ``None``), says (on stderr) and exits with."""

    result: Any = None
    message: Optional[str] = None
    status: int = 0


Handler = Callable[[AdminClient, Any], Answer]


def add_parser(sub) -> None:
    p = sub.add_parser("instance", help="manage instances on a running server", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    isub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, handler: Handler, *, with_id: bool = True):
        a = isub.add_parser(name, help=help, description=help)
        add_server_arguments(a)
        if with_id:
            a.add_argument("id", help="instance id")
        a.set_defaults(handler=lambda args: _run(handler, args))
        return a

    c = action("create", "create an instance; prints id, hostURL, applicationURL", _create, with_id=False)
    c.add_argument("--application-url", help="where the application will serve (default: a free loopback port)")
    c.add_argument("--output-semantics", choices=OUTPUT_SEMANTICS, help="meaning of its output locations")
    c.add_argument("--label", help="a free-text label kept with the instance")
    ls = action("list", "list instances", lambda admin, args: Answer(admin.instances(include_ended=args.all)),
                with_id=False)
    ls.add_argument("--all", action="store_true", help="include ended instances")
    action("show", "state, output locations, warnings of one instance", lambda admin, args: Answer(admin.instance(args.id)))
    ev = action("events", "the event history of one instance", _events)
    ev.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    ev.add_argument("--follow", "-f", action="store_true",
                    help="keep printing events as they happen (one JSON object per line) until the instance "
                         "ends or Ctrl-C")
    o = action("offer", "offer files or folders as inputs (paths on the server's filesystem; relative ones are "
                        "taken from the current folder)", _offer)
    o.add_argument("paths", nargs="+", help="DICOM files or folders")
    e = action("end", "ask the application to EXIT, then end the instance: its output locations expire, its data "
                      "is kept", _end)
    e.add_argument("--reason", default="ended by dicom-host instance end", help="recorded with the instance")
    e.add_argument("--exit-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the application's EXIT (default 10)")


def _create(admin: AdminClient, args) -> Answer:
    options = {k: v for k, v in (("output_semantics", args.output_semantics), ("label", args.label)) if v}
    return Answer(admin.create_instance(application_url=args.application_url, options=options))


def _events(admin: AdminClient, args) -> Answer:
    if not args.follow:
        return Answer(admin.events(args.id, after=args.after)[0])
    after = args.after
    try:
        while True:
            events, after = admin.events(args.id, after=after, wait=FOLLOW_POLL_SECONDS)
            for event in events:
                print(json.dumps(event), flush=True)
            if any(event["kind"] == "ended" for event in events) or (
                    not events and admin.instance(args.id)["endedAt"] is not None):
                return Answer()
    except KeyboardInterrupt:  # the way to stop following a live instance
        return Answer()


def _offer(admin: AdminClient, args) -> Answer:
    answer = admin.offer_inputs(args.id, [os.path.abspath(path) for path in args.paths])
    answer["availableData"] = to_jsonable(answer["availableData"])
    if answer["count"] == 0:
        reasons = "; ".join(f"{p['path']}: {p['reason']}" for p in answer["problems"][:5]) or "no DICOM files found"
        return Answer(answer, f"nothing was offered ({reasons})", EXIT_USAGE)
    return Answer(answer)


def _end(admin: AdminClient, args) -> Answer:
    instance = admin.instance(args.id)
    exited, message = (True, None) if instance["endedAt"] else _ask_to_exit(admin, instance, args.exit_timeout)
    ended = admin.end(args.id, args.reason)
    return Answer(ended, message, 0 if exited else EXIT_APP_RUNNING)


def _ask_to_exit(admin: AdminClient, instance: dict, timeout: float) -> tuple[bool, Optional[str]]:
    """Ask the application to EXIT when the table allows it; ``(whether it is gone, what to tell the user)``.
    One call to the application, then the wait is on the host's event stream (the application's EXIT
    notification), so at most one connection to the application is open at any time."""
    url = instance["applicationURL"]
    stop_it = f"dicom-host cannot stop a process it did not start: stop the application yourself (at {url})"
    state = None if instance["state"] is None else parse_state(instance["state"])
    if state is State.EXIT:
        return True, None
    if state is None:
        return False, f"the application never reported IDLE, so it was not asked to EXIT; if it is running, {stop_it}"
    if State.EXIT not in host_may_request(state):
        exits_from = ", ".join(s.value for s in State if State.EXIT in host_may_request(s))
        return False, (f"the application is {state}, and PS3.19 Table 7.2-2 lets the host ask for EXIT only from "
                       f"{exits_from}; it was not asked; {stop_it}")
    _, since = admin.events(instance["id"], kinds=["state"])
    from client import ApplicationCallError, ApplicationClient  # zeep: only when there is an application to call

    deadline = time.monotonic() + timeout
    try:
        with ApplicationClient(url, timeout=timeout) as application:
            accepted = application.set_state(State.EXIT)
    except ApplicationCallError as exc:
        return False, f"asking the application to EXIT failed ({exc.reason}); if it is running, {stop_it}"
    if not accepted:
        return False, f"the application refused SetState(EXIT) (it answered FALSE); {stop_it}"
    while (remaining := deadline - time.monotonic()) > 0:
        events, since = admin.events(instance["id"], after=since, wait=remaining, kinds=["state"])
        if any(event["data"]["to"] == State.EXIT.value for event in events):
            return True, None
    return False, f"the application accepted SetState(EXIT) but did not notify EXIT within {timeout:g} s; {stop_it}"


def _run(handler: Handler, args) -> int:

    try:
        admin = AdminClient(args.server, token=admin_token(args))
    except (ValueError, TokenError) as exc:
        print(f"dicom-host instance {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = handler(admin, args)
    except AdminError as exc:
        print(f"dicom-host instance {args.action}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    finally:
        admin.close()
    if answer.result is not None:
        json.dump(answer.result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if answer.message:
        sys.stdout.flush()
        print(f"dicom-host instance {args.action}: {answer.message}", file=sys.stderr)
    return answer.status
