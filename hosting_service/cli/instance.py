"""``dicom-host instance ...``: create, inspect, feed and end hosted-application instances on a running
server, through its admin API. Every answer is printed as JSON."""
from __future__ import annotations

import json
import sys

from hosting_service.admin.client import AdminClient, AdminError
from hosting_service.cli.exits import EXIT_SERVER, EXIT_USAGE
from hosting_service.config import OUTPUT_SEMANTICS
from hosting_service.model import to_jsonable


def add_parser(sub) -> None:
    p = sub.add_parser("instance", help="manage instances on a running server",
                       description=__doc__)
    isub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, handler, *, with_id: bool = True):
        a = isub.add_parser(name, help=help)
        a.add_argument("--server", default="http://127.0.0.1:8080", help="server URL (default http://127.0.0.1:8080)")
        a.add_argument("--admin-token", help="bearer token, when the server requires one")
        if with_id:
            a.add_argument("id", help="instance id")
        a.set_defaults(handler=lambda args: _run(handler, args))
        return a

    c = action("create", "create an instance; prints id, hostURL, applicationURL", _create, with_id=False)
    c.add_argument("--application-url", help="where the application will serve (default: a free loopback port)")
    c.add_argument("--output-semantics", choices=OUTPUT_SEMANTICS, help="meaning of its output locations")
    c.add_argument("--label", help="a free-text label kept with the instance")
    ls = action("list", "list instances", lambda admin, args: admin.instances(include_ended=args.all), with_id=False)
    ls.add_argument("--all", action="store_true", help="include ended instances")
    action("show", "state, output locations, warnings of one instance", lambda admin, args: admin.instance(args.id))
    ev = action("events", "the event history of one instance", _events)
    ev.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    o = action("offer", "offer files or folders (on the server's filesystem) as inputs", _offer)
    o.add_argument("paths", nargs="+", help="DICOM files or folders")
    e = action("end", "end an instance: its output locations expire, its data is kept", _end)
    e.add_argument("--reason", default="ended by dicom-host instance end")


def _create(admin: AdminClient, args):
    options = {k: v for k, v in (("output_semantics", args.output_semantics), ("label", args.label)) if v}
    return admin.create_instance(application_url=args.application_url, options=options)


def _events(admin: AdminClient, args):
    events, _ = admin.events(args.id, after=args.after)
    return events


def _offer(admin: AdminClient, args):
    answer = admin.offer_inputs(args.id, args.paths)
    answer["availableData"] = to_jsonable(answer["availableData"])
    return answer


def _end(admin: AdminClient, args):
    return admin.end(args.id, args.reason)


def _run(handler, args) -> int:

    try:
        admin = AdminClient(args.server, token=args.admin_token)
    except ValueError as exc:
        print(f"dicom-host instance {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = handler(admin, args)
    except AdminError as exc:
        print(f"dicom-host instance {args.action}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
