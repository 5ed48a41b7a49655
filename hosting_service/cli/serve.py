"""``dicom-host serve``: run the HostService, the http: output locations and the admin API under gunicorn.

Settings go to the workers as ``DICOM_HOST_*`` environment variables (see :mod:`hosting_service.config`).
Workers are gunicorn ``gthread`` workers: each request gets a thread, so a long http: upload or a long
poll of the admin API never holds up an application's SOAP call, and several workers share the SQLite
store safely.
"""
from __future__ import annotations

import argparse
import os
import sys

from hosting_service.cli.exits import EXIT_USAGE
from hosting_service.config import OUTPUT_SEMANTICS, Settings


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the Hosting System server (gunicorn)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8080)")
    p.add_argument("--data-dir", required=True, help="folder for the store, work areas and results")
    p.add_argument("--public-url", help="URL by which applications reach this server "
                   "(default http://HOST:PORT from --bind); hostURLs and http: locations are built from it")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=16, help="threads per worker (default 16)")
    p.add_argument("--admin-token", help="require this bearer token on the admin API (default: loopback only)")
    p.add_argument("--uid-root", help="organisation UID root for GenerateUID (default 2.25 UUID-derived UIDs)")
    p.add_argument("--screen", help="screen area for GetAvailableScreen, X,Y,WIDTH,HEIGHT")
    p.add_argument("--lenient", action="store_true",
                   help="answer out-of-state calls with nil/empty and a recorded warning instead of a SOAP fault")
    p.add_argument("--output-protocols", help="output location protocols offered, e.g. http or file,http")
    p.add_argument("--output-semantics", choices=OUTPUT_SEMANTICS,
                   help="default meaning of an output location URI (default directory)")
    p.add_argument("--output-retention", choices=["keep", "delete"],
                   help="keep or delete an instance's results when it ends (default keep)")
    p.add_argument("--upload-quota", type=int, metavar="BYTES",
                   help="bytes one instance may write to its http: output locations (default 8 GiB)")
    p.add_argument("--upload-max-request", type=int, metavar="BYTES",
                   help="largest single upload to an http: output location (default 4 GiB)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run)


def _settings_env(args) -> dict[str, str]:
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--bind must be HOST:PORT, got {args.bind!r}")
    env = dict(os.environ)
    env["DICOM_HOST_DATA_DIR"] = os.path.abspath(args.data_dir)
    if host in ("0.0.0.0", "[::]"):  # listening everywhere: apps on this machine still use loopback
        host = "127.0.0.1"
    env["DICOM_HOST_PUBLIC_URL"] = args.public_url or env.get("DICOM_HOST_PUBLIC_URL") or f"http://{host}:{port}"
    for option, name in [("admin_token", "ADMIN_TOKEN"), ("uid_root", "UID_ROOT"), ("screen", "SCREEN"),
                         ("output_protocols", "OUTPUT_PROTOCOLS"), ("output_semantics", "OUTPUT_SEMANTICS"),
                         ("output_retention", "OUTPUT_RETENTION"), ("upload_quota", "UPLOAD_QUOTA"),
                         ("upload_max_request", "UPLOAD_MAX_REQUEST")]:
        value = getattr(args, option)
        if value is not None:
            env["DICOM_HOST_" + name] = str(value)
    if args.lenient:
        env["DICOM_HOST_LENIENT"] = "1"
    env["DICOM_HOST_LOG_LEVEL"] = args.log_level
    return env


def run(args) -> int:
    from hosting_service.store import open_store

    try:
        env = _settings_env(args)
        settings = Settings.from_env(env)  # fail here, with the variable named, not in every worker
        open_store(settings)  # create the schema once, before the workers race for it
    except (ValueError, OSError) as exc:
        print(f"dicom-host serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", args.bind,
        "--worker-class", "gthread",
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "--timeout", "120",
        "--graceful-timeout", "10",
        "--log-level", args.log_level,
        "--error-logfile", "-",
        "--name", "dicom-host",
        "--config", "python:hosting_service.cli.gunicorn_conf",
        "hosting_service.app:create_app()",
    ]
    os.execve(sys.executable, argv, env)
    return 0  # not reached
