"""The app registry: the hosted applications a service may run as jobs, from a TOML file.

``dicom-host serve --apps FILE`` (``DICOM_HOST_APPS``) reads it at start-up and refuses to start on any
mistake, with a message naming the file, the entry and the field (``apps.toml: apps.mip.retries: must be
an integer from 0 to 100, got -1``). Unknown keys are mistakes too: a misspelt ``max_runing`` must not
silently mean "unlimited". The minimal entry is a table holding the command::

    [apps.mip]
    command = ["python3", "-m", "client.examples.mip_app"]

Everything else has a default; deployment-wide ones (output protocols and semantics, ``file_uris``) come
from :class:`~hosting_service.config.Settings`, timeouts from :class:`~hosting_service.orchestration.options.RunOptions`.
:meth:`AppSpec.to_json` is the resolved entry handed to a worker with each lease.
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from hosting_service.config import OUTPUT_SEMANTICS, Settings, normalize_protocol
from hosting_service.orchestration.options import RunOptions
from hosting_service.orchestration.tasks import TASK_SCOPES

APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_RETRIES = 100
MAX_ARGV_ITEMS = 1000
MAX_TIMEOUT = 7 * 24 * 3600.0
_MEMORY = re.compile(r"[0-9]{1,12}[kmg]?", re.I)

TIMEOUT_FIELDS = {"startup": "startup_timeout", "state": "state_timeout", "task": "task_timeout",
                  "call": "call_timeout", "exit": "exit_grace"}
"""Registry timeout name -> the :class:`RunOptions` field whose default it shares."""


class RegistryError(ValueError):
    """The registry file is unreadable or an entry is wrong; the message names file, entry and field."""


class UnknownApp(LookupError):
    """No app of that name is registered."""


def _default_timeouts() -> dict[str, float]:
    defaults = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    return {name: float(defaults[option]) for name, option in TIMEOUT_FIELDS.items()}  # type: ignore[arg-type]


@dataclass(frozen=True)
class AppSpec:
    """One registered application, every default filled in."""

    name: str
    command: tuple[str, ...]
    """argv; empty only when ``image`` is given (the image's own entry point then starts the app)."""
    image: Optional[str]
    environment: dict[str, str]
    working_dir: Optional[str]
    """``None``: the worker's job folder."""
    args: tuple[str, ...]
    output_protocols: tuple[str, ...]
    output_semantics: str
    file_uris: bool
    task_per: str
    retries: int
    max_running: int
    """Jobs of this app running at once; 0: unlimited."""
    cpus: Optional[float]
    memory: Optional[str]
    timeouts: dict[str, float]

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def to_json(self) -> dict[str, Any]:
        """The resolved entry, as a worker receives it with a lease."""
        return {
            "name": self.name, "command": list(self.command), "image": self.image,
            "environment": dict(self.environment), "working_dir": self.working_dir, "args": list(self.args),
            "output_protocols": list(self.output_protocols), "output_semantics": self.output_semantics,
            "file_uris": self.file_uris, "task_per": self.task_per, "retries": self.retries,
            "max_running": self.max_running, "cpus": self.cpus, "memory": self.memory,
            "timeouts": dict(self.timeouts),
        }


class AppRegistry:
    """The registered apps by name (empty when the deployment has no registry file)."""

    def __init__(self, apps: dict[str, AppSpec], source: Optional[Path] = None):
        self.apps = apps
        self.source = source

    def get(self, name: str) -> AppSpec:
        try:
            return self.apps[name]
        except KeyError:
            if not self.apps:
                raise UnknownApp(f"unknown app {name[:80]!r}: this server has no app registry "
                                 "(start it with --apps FILE)") from None
            raise UnknownApp(f"unknown app {name[:80]!r}; registered: {', '.join(sorted(self.apps))}") from None

    def names(self) -> list[str]:
        return sorted(self.apps)


def load_registry(settings: Settings) -> AppRegistry:
    """The deployment's registry (``settings.apps_file``); an empty one when none is configured."""
    if settings.apps_file is None:
        return AppRegistry({})
    return parse_registry(settings.apps_file, settings)


def parse_registry(path: Path, settings: Settings) -> AppRegistry:
    """Read and validate the registry at ``path``; :class:`RegistryError` naming file, entry and field."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise RegistryError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"apps"})
    if extra:
        raise RegistryError(f"{path}: unknown top-level key {extra[0]!r} (the file holds [apps.NAME] tables)")
    apps = document.get("apps", {})
    if not isinstance(apps, dict) or not apps:
        raise RegistryError(f"{path}: no apps: add at least one [apps.NAME] table with a command")
    specs = {}
    for name, entry in apps.items():
        where = f"{path}: apps.{name}"
        if not APP_NAME.fullmatch(name):
            raise RegistryError(f"{where}: an app name is lower-case letters, digits, '_' and '-' "
                                "(1 to 64, starting with a letter or digit)")
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: must be a table ([apps.{name}])")
        specs[name] = _Entry(where, entry).spec(name, settings)
    return AppRegistry(specs, path)


class _Entry:
    """Reads one ``[apps.NAME]`` table, field by field, with errors that name the field."""

    def __init__(self, where: str, table: dict[str, Any]):
        self.where = where
        self.table = table

    def fail(self, key: str, problem: str) -> RegistryError:
        return RegistryError(f"{self.where}.{key}: {problem}")

    def get(self, key: str, default: Any, check: Callable[[Any], Any], expected: str) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise self.fail(key, f"must be {expected}, got {value!r}"[:300] + detail) from None

    def spec(self, name: str, settings: Settings) -> AppSpec:
        unknown = sorted(set(self.table) - _FIELDS)
        if unknown:
            raise self.fail(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
        image = self.get("image", None, _text, "a non-empty string (a container image)")
        command = self.get("command", (), _argv, "a non-empty list of strings (argv)")
        if not command and image is None:
            raise self.fail("command", "missing: every app needs a command (an argv list), or an image")
        return AppSpec(
            name=name,
            command=command,
            image=image,
            environment=self.get("environment", {}, _environment, "a table of string values"),
            working_dir=self.get("working_dir", None, _text, "a non-empty string (a folder)"),
            args=self.get("args", (), _strings, "a list of strings"),
            output_protocols=self.get("output_protocols", settings.output_protocols, _protocols,
                                      "a non-empty list of file, http, https"),
            output_semantics=self.get("output_semantics", settings.output_semantics,
                                      _one_of(OUTPUT_SEMANTICS), " or ".join(OUTPUT_SEMANTICS)),
            # DICOM_HOST_FILE_URIS comes with the httpdata branch; until then file: URIs are allowed
            file_uris=self.get("file_uris", getattr(settings, "file_uris", True), _boolean, "true or false"),
            task_per=self.get("task_per", "all", _one_of(TASK_SCOPES), ", ".join(TASK_SCOPES)),
            retries=self.get("retries", 0, _integer(0, MAX_RETRIES), f"an integer from 0 to {MAX_RETRIES}"),
            max_running=self.get("max_running", 0, _integer(0, 1_000_000), "an integer from 0 (unlimited) up"),
            cpus=self.get("cpus", None, _cpus, "a positive number of CPUs"),
            memory=self.get("memory", None, _memory, "a size such as \"512m\" or \"2g\""),
            timeouts=self._timeouts(),
        )

    def _timeouts(self) -> dict[str, float]:
        timeouts = _default_timeouts()
        table = self.table.get("timeouts", {})
        if not isinstance(table, dict):
            raise self.fail("timeouts", f"must be a table ([apps.NAME.timeouts]) of {', '.join(TIMEOUT_FIELDS)}")
        for key, value in table.items():
            if key not in TIMEOUT_FIELDS:
                raise self.fail(f"timeouts.{key}", f"unknown timeout (known: {', '.join(TIMEOUT_FIELDS)})")
            try:
                timeouts[key] = _seconds(value)
            except (TypeError, ValueError):
                raise self.fail(f"timeouts.{key}", f"must be a number of seconds above 0 and up to "
                                f"{MAX_TIMEOUT:g}, got {value!r}") from None
        return timeouts


_FIELDS = {"command", "image", "environment", "working_dir", "args", "output_protocols", "output_semantics",
           "file_uris", "task_per", "retries", "max_running", "cpus", "memory", "timeouts"}


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_ARGV_ITEMS:
        raise TypeError
    if not all(isinstance(v, str) and "\0" not in v for v in value):
        raise TypeError
    return tuple(value)


def _argv(value: Any) -> tuple[str, ...]:
    argv = _strings(value)
    if not argv or not argv[0]:
        raise ValueError
    return argv


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError
    for k, v in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"{k!r} is not a variable name")
        if not isinstance(v, str) or "\0" in v:
            raise ValueError(f"{k} is not a string")
    return dict(value)


def _protocols(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise TypeError
    return tuple(dict.fromkeys(normalize_protocol(v) for v in value))


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError
        return value

    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError
    return float(value)


def _cpus(value: Any) -> float:
    cpus = _number(value)
    if not 0 < cpus <= 1024:
        raise ValueError
    return cpus


def _seconds(value: Any) -> float:
    seconds = _number(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError
    return seconds


def _memory(value: Any) -> str:
    if not isinstance(value, str) or not _MEMORY.fullmatch(value):
        raise ValueError
    return value.lower()
