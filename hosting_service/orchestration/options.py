"""What one ``dicom-host run`` is asked to do (the CLI's options, with their defaults)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the server imports these options for their defaults (app registry), not the launching
    from hosting_service.orchestration.process import Launcher

INSTANCE_LEASE_SECONDS = 30.0
"""``run --server``: the instance is created with this lease and heartbeated every third of it, so the server
ends it when the run is gone (killed) instead of leaving it INPROGRESS for ever."""


@dataclass(frozen=True)
class JobLease:
    """The job a worker runs: the instance is created for it, with its uploaded inputs."""

    id: str
    lease: str


@dataclass
class RunOptions:
    app: str
    """The command that starts the application, split like a shell would (never run by one)."""
    inputs: list[Path]
    output: Path
    app_args: list[str] = field(default_factory=list)
    """Extra arguments for the application, after ``--hostURL U1 --applicationURL U2``."""
    server: Optional[str] = None
    """A running server's URL; ``None`` starts one for this run."""
    admin_token: Optional[str] = None
    data_dir: Optional[Path] = None
    """Data dir of the server this run starts (``None``: a temporary one, removed at the end)."""
    task_per: str = "all"
    batch_size: int = 1000
    """Most descriptors in one NotifyDataAvailable call."""
    startup_timeout: float = 30.0
    state_timeout: float = 15.0
    task_timeout: float = 3600.0
    call_timeout: float = 30.0
    exit_grace: float = 5.0
    output_semantics: Optional[str] = None
    """``directory`` or ``file`` for this application's output locations; ``None``: the server's default."""
    trust_app_uris: bool = False
    """Read outputs from any URI the application hands back (the old behaviour, for trusted applications on
    this machine). Off: only the instance's own output locations and the application's own endpoint."""
    environment: dict[str, str] = field(default_factory=dict)
    """Variables added to the application's environment (an app registry entry's ``environment``)."""
    working_dir: Optional[Path] = None
    """The application's working folder (``None``: the caller's)."""
    file_uris: Optional[bool] = None
    """Whether file: URIs may be used with this instance (``None``: the server's default)."""
    output_protocols: Optional[list[str]] = None
    """Output location protocols for this instance (``None``: the server's default)."""
    label: str = "dicom-host run"
    """Kept with the instance."""
    job: Optional[JobLease] = None
    """Set by ``dicom-host worker``: the instance belongs to this job (its lease covers the instance) and
    the inputs are the job's uploaded ones, not :attr:`inputs`."""
    launcher: Optional[Launcher] = None
    """How the application is started (``None``: a child process from :attr:`app`, :attr:`environment` and
    :attr:`working_dir`); a worker gives app registry entries with an ``image`` a container launcher."""
    instance_lease: Optional[float] = INSTANCE_LEASE_SECONDS
    """With :attr:`server` and no :attr:`job`: the instance's lease, renewed while the run goes (``None``: no
    lease)."""
    output_models: bool = False
    """Also read each output's Native DICOM Model through the application's model interface (PS3.19
    §8.3.3) and save it as ``models/<descriptor uuid>.xml`` beside the objects."""
