"""``dicom-host serve``: run the HostService, the http: output locations and the admin API under gunicorn.

Settings go to the workers as ``DICOM_HOST_*`` environment variables (see :mod:`hosting_service.config`);
an option given here overrides its variable. The listening socket is bound here, before anything else is
created, and handed to gunicorn (``--bind fd://N``): an address in use is a usage error at once, and a
parent that bound the socket itself (``dicom-host run``, the tests) passes ``--bind fd://N`` so that no
other process can take the port in between. Workers are gunicorn ``gthread`` workers that read each
request before a thread takes it (:mod:`hosting_service.worker`): a long http: upload, a long poll of the
admin API or a slow client never holds up an application's SOAP call, and several workers share the
SQLite store safely. gunicorn's control socket is off: servers on one machine share nothing through it.
The workers' metric files go to a private folder made here (:func:`hosting_service.metrics.
prepare_multiprocess_dir`), removed when gunicorn exits. With ``--log-format json`` gunicorn's own lines
are JSON lines too.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from hosting_service import metrics
from hosting_service.cli.exits import EXIT_USAGE
from hosting_service.config import ENV_PREFIX, OUTPUT_SEMANTICS, Settings
from hosting_service.logs import LOG_FORMATS

_BACKLOG = 2048


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the Hosting System server (gunicorn)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8080), or fd://N: a listening socket "
                        "the caller bound and passed")
    p.add_argument("--data-dir", help="folder for the store, work areas and results "
                   "(default $DICOM_HOST_DATA_DIR, else ./var)")
    p.add_argument("--public-url", help="URL by which applications reach this server "
                   "(default http://HOST:PORT of the listening socket); hostURLs and http: locations are built from it")
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
    p.add_argument("--file-uris", action=argparse.BooleanOptionalAction, default=None,
                   help="may instances use file: URIs (inputs, output locations) unless their file_uris option "
                   "says otherwise? --no-file-uris when applications do not share this server's filesystem "
                   "(default yes)")
    p.add_argument("--output-retention", choices=["keep", "delete"],
                   help="keep or delete an instance's results when it ends (default keep)")
    p.add_argument("--upload-quota", type=int, metavar="BYTES",
                   help="bytes one instance may write to its http: output locations (default 8 GiB)")
    p.add_argument("--upload-max-request", type=int, metavar="BYTES",
                   help="largest single upload to an http: output location (default 4 GiB)")
    p.add_argument("--read-timeout", type=float, metavar="SECONDS",
                   help="time a client has to send a request, and longest pause in an upload (default 30)")
    p.add_argument("--max-connections", type=int, metavar="N",
                   help="open connections per worker process (default 256)")
    p.add_argument("--store", metavar="URL",
                   help="session store: sqlite:///PATH (default <data dir>/store.sqlite3) or postgresql://... "
                        "(one database several servers share)")
    p.add_argument("--apps", metavar="FILE", help="the app registry (TOML): the applications jobs may run "
                   "(checked at start-up)")
    p.add_argument("--input-roots", metavar="DIR[:DIR...]",
                   help="folders on this server whose files the admin API may offer as inputs by path "
                        "(default: none; job inputs are uploaded)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   help="log lines as text or as JSON objects (default $DICOM_HOST_LOG_FORMAT, else text)")
    p.set_defaults(handler=run)


_OPTION_VARIABLES = [("data_dir", "DATA_DIR"), ("admin_token", "ADMIN_TOKEN"), ("uid_root", "UID_ROOT"),
                     ("screen", "SCREEN"), ("output_protocols", "OUTPUT_PROTOCOLS"),
                     ("output_semantics", "OUTPUT_SEMANTICS"), ("output_retention", "OUTPUT_RETENTION"),
                     ("upload_quota", "UPLOAD_QUOTA"), ("upload_max_request", "UPLOAD_MAX_REQUEST"),
                     ("read_timeout", "READ_TIMEOUT"), ("max_connections", "MAX_CONNECTIONS"),
                     ("store", "STORE"), ("apps", "APPS"), ("input_roots", "INPUT_ROOTS"),
                     ("log_format", "LOG_FORMAT")]


def _settings_env(args) -> dict[str, str]:
    """The environment of the workers: the caller's, with the options given here as variables."""
    env = dict(os.environ)
    for option, name in _OPTION_VARIABLES:
        value = getattr(args, option)
        if value is not None:
            env[ENV_PREFIX + name] = str(value)
    if args.lenient:
        env[ENV_PREFIX + "LENIENT"] = "1"
    if args.file_uris is not None:
        env[ENV_PREFIX + "FILE_URIS"] = "1" if args.file_uris else "0"
    env[ENV_PREFIX + "LOG_LEVEL"] = args.log_level
    return env


def listen(bind: str) -> socket.socket:
    """The listening socket ``bind`` names: ``HOST:PORT`` (bound here) or ``fd://N`` (bound by the caller).

    Raises ``ValueError`` for a malformed address, ``OSError`` when it cannot be bound (in use, not ours)."""
    if bind.startswith("fd://"):
        if not bind[5:].isdigit():
            raise ValueError(f"--bind fd://N needs a file descriptor number, got {bind!r}")
        sock = socket.socket(fileno=int(bind[5:]))
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"--bind {bind}: not a stream socket")
        return sock
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"--bind must be HOST:PORT or fd://N, got {bind!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family, backlog=_BACKLOG)
    except OSError as exc:
        raise OSError(f"cannot listen on {bind}: {exc.strerror or exc}") from None


def _public_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # listening everywhere: apps on this machine still use loopback
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(args) -> int:
    from hosting_service.jobs.registry import load_registry
    from hosting_service.store import StoreError, open_store

    try:
        env = _settings_env(args)
        Settings.from_env(env)  # fail here, with the variable named, before anything is created
        sock = listen(args.bind)
        env[ENV_PREFIX + "PUBLIC_URL"] = args.public_url or env.get(ENV_PREFIX + "PUBLIC_URL") or _public_url(sock)
        settings = Settings.from_env(env)
        env[ENV_PREFIX + "DATA_DIR"] = str(settings.data_dir.resolve())  # the workers may change folder
        if settings.apps_file is not None:
            env[ENV_PREFIX + "APPS"] = str(settings.apps_file.resolve())
        load_registry(settings)  # a mistake in the app registry stops the start, naming file, entry and field
        open_store(Settings.from_env(env)).close()  # migrate once, before the workers race for it
        env[metrics.MULTIPROC_ENV] = metrics.prepare_multiprocess_dir()
    except (ValueError, OSError, StoreError) as exc:
        print(f"dicom-host serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sock.set_inheritable(True)
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"fd://{sock.fileno()}",
        "--worker-class", "hosting_service.worker.PollerReadWorker",
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "--worker-connections", str(settings.max_connections),
        "--timeout", "120",
        "--graceful-timeout", "10",
        "--no-control-socket",
        "--log-level", args.log_level,
        "--error-logfile", "-",
        "--name", "dicom-host",
        "--config", "python:hosting_service.cli.gunicorn_conf",
        *(["--logger-class", "hosting_service.cli.gunicorn_conf.JsonLogger"] if settings.log_format == "json" else []),
        "hosting_service.app:create_app()",
    ]
    os.execve(sys.executable, argv, env)
    return 0  # not reached
