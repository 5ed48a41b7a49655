"""All settings of a Hosting System deployment, in one place.

A :class:`Settings` is built from ``DICOM_HOST_*`` environment variables, so that every gunicorn worker
of one deployment sees the same values; ``dicom-host serve`` turns its options into those variables
before it starts gunicorn. Each field documents its variable and default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Optional

from hosting_service.model import Rectangle

ENV_PREFIX = "DICOM_HOST_"

OUTPUT_PROTOCOLS = ("file", "http", "https")
"""The output-location protocols a deployment can offer (:mod:`hosting_service.outputs.protocols` chooses)."""


def normalize_protocol(text: str) -> str:
    """``"file:"``, ``"FILE"``, ``" http: "``, ``"https://"`` ... as ``file``/``http``/``https``.

    Raises ``ValueError`` for anything else, naming what is understood.
    """
    value = str(text).strip().lower()
    for suffix in ("://", ":"):
        if value.endswith(suffix):
            value = value[: -len(suffix)]
            break
    if value not in OUTPUT_PROTOCOLS:
        raise ValueError(f"unknown output protocol {text!r} (understood: file:, http:, https:)")
    return value


def _rect(text: str) -> Rectangle:
    """``"X,Y,WIDTH,HEIGHT"`` (screen coordinates, origin top-left) as a Rectangle."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"screen must be X,Y,WIDTH,HEIGHT in pixels, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"screen width and height must be positive, got {text!r}")
    return Rectangle(Height=h, Width=w, RefPointX=x, RefPointY=y)


def _protocols(text: str) -> tuple[str, ...]:
    result = tuple(normalize_protocol(p) for p in text.split(",") if p.strip())
    if not result:
        raise ValueError("at least one output protocol must be allowed")
    return result


def _choice(*options: str):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")
        return value

    return parse


OUTPUT_SEMANTICS = ("directory", "file")
"""What an output location URI names: a folder (the URI ends in ``/``) or one file (XIP's RECIST)."""
DIRECTORY_SEMANTICS, FILE_SEMANTICS = OUTPUT_SEMANTICS


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def instance_file_uris(options: Mapping[str, object], settings: "Settings") -> bool:
    """Whether file: URIs may be used with an instance: its ``file_uris`` option, else the setting."""
    value = options.get("file_uris")
    return settings.file_uris if value is None else bool(value)
def _roots(text: str) -> tuple[Path, ...]:
    """Colon-separated absolute folders (``DICOM_HOST_INPUT_ROOTS``)."""
    roots = tuple(Path(p) for p in text.split(":") if p.strip())
    relative = [str(p) for p in roots if not p.is_absolute()]
    if relative:
        raise ValueError(f"input roots must be absolute folders, got {', '.join(relative)}")
    return roots


def _positive(parse):
    def check(text: str):
        value = parse(text)
        if not value > 0:
            raise ValueError(f"must be positive, got {text!r}")
        return value

    return check


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default=Path("./var"), metadata={"env": "DATA_DIR", "parse": Path})
    """Where the store, the work areas and the results live (``DICOM_HOST_DATA_DIR``; relative to the working
    folder of ``dicom-host serve``)."""

    public_url: str = field(default="http://127.0.0.1:8080", metadata={"env": "PUBLIC_URL", "parse": str})
    """Base URL by which applications reach this server. hostURLs, ``?wsdl`` addresses and http: output
    locations are built from it, never from a request's Host header (``DICOM_HOST_PUBLIC_URL``)."""

    admin_token: Optional[str] = field(default=None, metadata={"env": "ADMIN_TOKEN", "parse": str})
    """Bearer token for the admin API. Unset: the admin API answers loopback clients only."""

    uid_root: Optional[str] = field(default=None, metadata={"env": "UID_ROOT", "parse": str})
    """Organisation root for GenerateUID. Unset: ``2.25.<uuid as integer>`` UIDs (PS3.5 B.2)."""

    screen: Rectangle = field(
        default_factory=lambda: Rectangle(Height=1080, Width=1920, RefPointX=0, RefPointY=0),
        metadata={"env": "SCREEN", "parse": _rect},
    )
    """The screen area GetAvailableScreen may hand out, ``X,Y,WIDTH,HEIGHT``."""

    lenient_preconditions: bool = field(default=False, metadata={"env": "LENIENT", "parse": _bool})
    """False: an operation called out of state is a Client fault. True: it answers nil/empty and the
    store records a protocol warning (for applications that cannot be fixed)."""

    output_protocols: tuple[str, ...] = field(
        default=("file", "http"), metadata={"env": "OUTPUT_PROTOCOLS", "parse": _protocols}
    )
    """Output location protocols this deployment hands out (``file``, ``http``, ``https``). Use only
    ``http`` when applications do not share the host's filesystem."""

    output_semantics: str = field(
        default=DIRECTORY_SEMANTICS, metadata={"env": "OUTPUT_SEMANTICS", "parse": _choice(*OUTPUT_SEMANTICS)}
    )
    """Default meaning of an output location: a directory (the URI ends in ``/``) or a single file
    (XIP's RECIST treats it so). Overridable per instance."""

    output_retention: str = field(
        default="keep", metadata={"env": "OUTPUT_RETENTION", "parse": _choice("keep", "delete")}
    )
    """What happens to an instance's results when it ends: ``keep`` them or ``delete`` them."""

    upload_quota_bytes: int = field(default=8 << 30, metadata={"env": "UPLOAD_QUOTA", "parse": int})
    """Total bytes one instance may write to its http: output locations."""

    upload_max_request_bytes: int = field(default=4 << 30, metadata={"env": "UPLOAD_MAX_REQUEST", "parse": int})
    """Largest single PUT/POST body accepted at an http: output location."""

    soap_max_body_bytes: int = field(default=2 << 20, metadata={"env": "SOAP_MAX_BODY", "parse": int})
    """Largest SOAP request accepted, in bytes after any gzip decoding (a GetData of 5,000 UUIDs is about
    0.3 MB; a NotifyDataAvailable of 3,000 descriptors about 1 MB)."""

    soap_max_depth: int = field(default=64, metadata={"env": "SOAP_MAX_DEPTH", "parse": int})
    """Deepest XML element nesting accepted in a SOAP request (the standard's messages need < 15)."""

    soap_max_elements: int = field(default=40_000, metadata={"env": "SOAP_MAX_ELEMENTS", "parse": int})
    """Most XML elements accepted in one SOAP request, counted while parsing: the work a request causes
    grows with its elements (about 20 microseconds each), so this bounds it (a GetData of 5,000 UUIDs has
    10,000)."""

    soap_max_items: int = field(default=5_000, metadata={"env": "SOAP_MAX_ITEMS", "parse": int})
    """Most items accepted in any one array of a SOAP request (``ArrayOfUUID``, ``ArrayOfObjectDescriptor``...)."""

    trust_app_uris: bool = field(default=False, metadata={"env": "TRUST_APP_URIS", "parse": _bool})
    """``dicom-host run``: read an application's outputs from any file:, http: or https: URI it hands back
    (``--trust-app-uris``), for trusted applications on the same machine. Unset: only from the instance's
    own output locations and the application's own endpoint; anything else is refused with a warning."""

    delivery_cache_bytes: int = field(default=4 << 30, metadata={"env": "DELIVERY_CACHE_BYTES", "parse": int})
    """Bound of the delivery cache (``<data_dir>/delivery-cache``): the transcoded copies of inputs that GetData
    makes, shared by all instances; least recently used copies go first (:mod:`hosting_service.dicom.cache`)."""

    models_max_per_call: int = field(default=2000, metadata={"env": "MODELS_MAX_PER_CALL", "parse": int})
    """Most objects one GetAsModels call, and most models one QueryModel/QueryInfoSet call, may ask for;
    more is a Client fault."""

    models_max_answer_bytes: int = field(default=32 << 20, metadata={"env": "MODELS_MAX_ANSWER", "parse": int})
    """Largest QueryModel/QueryInfoSet answer (the bytes of its result values); a query that would answer
    more is a Client fault asking for fewer models or narrower XPaths."""

    models_inline_max_bytes: int = field(default=1024, metadata={"env": "MODELS_INLINE_MAX", "parse": int})
    """Binary values up to this size are InlineBinary in a Native DICOM Model; larger ones are BulkData
    that GetData serves."""

    docker_network: str = field(default="", metadata={"env": "DOCKER_NETWORK", "parse": str})
    """``dicom-host worker``: the Docker network that app containers (registry entries with an ``image``) join, where
    their names resolve and the server is reachable; required for such apps (docker-compose.yml sets it)."""

    container_host_url: str = field(default="", metadata={"env": "CONTAINER_HOST_URL", "parse": str})
    """``dicom-host worker``: the server's URL as app containers reach it on that network, the base of their
    ``--hostURL``; empty: the hostURL the server gives (its public URL)."""

    read_timeout: float = field(default=30.0, metadata={"env": "READ_TIMEOUT", "parse": float})
    """Seconds a client has to send a whole request (head and body; for an upload to an http: output location,
    the head), and the longest pause allowed within an upload's body. A slower client gets ``408``, or its
    upload is aborted (:mod:`hosting_service.worker`)."""

    max_connections: int = field(default=256, metadata={"env": "MAX_CONNECTIONS", "parse": int})
    """Open client connections one server worker process holds at most; more wait in the listen queue."""

    store_url: str = field(default="", metadata={"env": "STORE", "parse": str})
    """Session store: empty or ``sqlite:///path`` (default ``<data_dir>/store.sqlite3``), or
    ``postgresql://user:password@host:port/database`` (any libpq URL) for a store several frontends share."""

    store_pool_size: int = field(default=8, metadata={"env": "STORE_POOL_SIZE", "parse": int})
    """PostgreSQL store: connections each server process keeps at most (its threads wait for a free one)."""

    log_format: str = field(default="text", metadata={"env": "LOG_FORMAT", "parse": _choice("text", "json")})
    """Server log lines: ``text`` (one line each) or ``json`` (one JSON object a line, with ``instance_id`` and
    ``job_id`` when known), gunicorn's own lines too (:mod:`hosting_service.logs`)."""
    file_uris: bool = field(default=True, metadata={"env": "FILE_URIS", "parse": _bool})
    """Whether file: URIs may be used with an instance (the default of its ``file_uris`` option): GetData
    answers with file: URIs and file: output locations can be handed out. False, for applications that do
    not share the server's filesystem: inputs are served as http: URIs (``/inputs/...``) and only http:
    output locations are handed out."""
    lease_seconds: float = field(default=30.0, metadata={"env": "LEASE_SECONDS", "parse": _positive(float)})
    """How long a worker's lease on a job, or a runner's lease on an instance, lasts without a heartbeat
    (workers beat every third of it); an expired lease is reaped by every frontend (:mod:`hosting_service.jobs`)."""

    apps_file: Optional[Path] = field(default=None, metadata={"env": "APPS", "parse": Path})
    """The app registry (TOML, ``serve --apps``): the applications jobs may run. Unset: no app is registered
    and every job submission is refused."""

    input_roots: tuple[Path, ...] = field(default=(), metadata={"env": "INPUT_ROOTS", "parse": _roots})
    """Folders on the server's disk whose files the admin API may offer as inputs by path (job JSON
    ``paths``, instance ``inputs``), colon-separated. Empty (the default of a served deployment): none; inputs
    are uploaded with the job. ``dicom-host run`` gives its own server ``/``."""

    job_max_upload_bytes: int = field(default=8 << 30, metadata={"env": "JOB_MAX_UPLOAD", "parse": _positive(int)})
    """Largest job submission or job results upload (the whole tar stream)."""

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Settings from ``DICOM_HOST_*`` variables; unset ones keep their defaults.

        A malformed value raises ``ValueError`` naming the variable.
        """
        variables: Mapping[str, str] = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.metadata["env"]
            if variables.get(name, "") != "":
                try:
                    values[f.name] = f.metadata["parse"](variables[name])
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        settings = cls(**values)
        if settings.read_timeout <= 0 or settings.max_connections <= 0:
            raise ValueError(f"{ENV_PREFIX}READ_TIMEOUT and {ENV_PREFIX}MAX_CONNECTIONS must be positive")
        if settings.store_pool_size <= 0:
            raise ValueError(f"{ENV_PREFIX}STORE_POOL_SIZE must be positive")
        return settings

    @property
    def public_url_base(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def store_path(self) -> Path:
        if self.store_url.startswith("sqlite:///"):
            return Path(self.store_url[len("sqlite:///") :])
        return self.data_dir / "store.sqlite3"

    @property
    def delivery_cache_dir(self) -> Path:
        return self.data_dir / "delivery-cache"

    @property
    def jobs_dir(self) -> Path:
        """Per-job folders: ``<data_dir>/jobs/<job id>/{inputs,results}/``."""
        return self.data_dir / "jobs"

    @property
    def instances_dir(self) -> Path:
        """Per-instance work areas: ``<data_dir>/instances/<instance id>/``."""
        return self.data_dir / "instances"
