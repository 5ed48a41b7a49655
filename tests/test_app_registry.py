"""The app registry (``serve --apps FILE``): defaults, and mistakes named by file, entry and field."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from hosting_service.config import Settings
from hosting_service.jobs.registry import RegistryError, parse_registry

MINIMAL = '[apps.mip]\ncommand = ["python3", "-m", "client.examples.mip_app"]\n'


def registry(tmp_path, text: str, settings: Settings = Settings()):
    path = tmp_path / "apps.toml"
    path.write_text(text)
    return parse_registry(path, settings)


def test_the_minimal_entry_gets_every_default(tmp_path):
    settings = Settings(output_protocols=("http",), output_semantics="file")
    spec = registry(tmp_path, MINIMAL, settings).get("mip")
    assert spec.to_json() == {
        "name": "mip", "command": ["python3", "-m", "client.examples.mip_app"], "image": None,
        "environment": {}, "working_dir": None, "args": [], "output_protocols": ["http"],
        "output_semantics": "file", "file_uris": True, "task_per": "all", "retries": 0, "max_running": 0,
        "cpus": None, "memory": None,
        "timeouts": {"startup": 30.0, "state": 15.0, "task": 3600.0, "call": 30.0, "exit": 5.0},
    }
    assert spec.max_attempts == 1


def test_a_full_entry_is_taken_as_written(tmp_path):
    spec = registry(tmp_path, """
[apps.seg-2]
command = ["seg"]
image = "apps:1"
environment = { AXIS = "2" }
working_dir = "/srv/app"
args = ["--verbose"]
output_protocols = ["HTTP:", "https"]
output_semantics = "directory"
file_uris = false
task_per = "series"
retries = 2
max_running = 3
cpus = 1.5
memory = "2G"
[apps.seg-2.timeouts]
startup = 60
task = 7.5
""").get("seg-2")
    assert (spec.image, spec.environment, spec.working_dir, spec.args) == ("apps:1", {"AXIS": "2"}, "/srv/app",
                                                                          ("--verbose",))
    assert (spec.output_protocols, spec.file_uris, spec.task_per) == (("http", "https"), False, "series")
    assert (spec.retries, spec.max_attempts, spec.max_running, spec.cpus, spec.memory) == (2, 3, 3, 1.5, "2g")
    assert spec.timeouts == {"startup": 60.0, "state": 15.0, "task": 7.5, "call": 30.0, "exit": 5.0}


@pytest.mark.parametrize("text, where", [
    ('[apps.mip]\ncommand = ["a"]\nmax_runing = 2\n', "apps.mip.max_runing: unknown field"),
    ('[apps.mip]\nenvironment = {}\n', "apps.mip.command: missing"),
    ('[apps.mip]\ncommand = []\n', "apps.mip.command: must be a non-empty list"),
    ('[apps.mip]\ncommand = "python3 app.py"\n', "apps.mip.command: must be a non-empty list"),
    ('[apps.mip]\ncommand = ["a"]\nretries = -1\n', "apps.mip.retries: must be an integer from 0 to 100"),
    ('[apps.mip]\ncommand = ["a"]\nretries = true\n', "apps.mip.retries"),
    ('[apps.mip]\ncommand = ["a"]\ntask_per = "slice"\n', "apps.mip.task_per: must be all, patient"),
    ('[apps.mip]\ncommand = ["a"]\noutput_protocols = ["ftp"]\n', "apps.mip.output_protocols: must be"),
    ('[apps.mip]\ncommand = ["a"]\nenvironment = { "A-B" = "1" }\n', "apps.mip.environment"),
    ('[apps.mip]\ncommand = ["a"]\nmemory = "lots"\n', "apps.mip.memory"),
    ('[apps.mip]\ncommand = ["a"]\n[apps.mip.timeouts]\nstart = 3\n', "apps.mip.timeouts.start: unknown timeout"),
    ('[apps.mip]\ncommand = ["a"]\n[apps.mip.timeouts]\ntask = 0\n', "apps.mip.timeouts.task: must be a number"),
    ('[apps.MIP]\ncommand = ["a"]\n', "apps.MIP: an app name is lower-case"),
    ('[apps]\nmip = 3\n', "apps.mip: must be a table"),
    ('[tools.mip]\ncommand = ["a"]\n', "unknown top-level key 'tools'"),
    ('', "no apps"),
    ('[apps.mip\ncommand = ["a"]\n', "not valid TOML"),
])
def test_mistakes_name_the_file_the_entry_and_the_field(tmp_path, text, where):
    with pytest.raises(RegistryError) as caught:
        registry(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'apps.toml'}: ")
    assert where in str(caught.value)


def test_serve_refuses_to_start_with_a_bad_registry(tmp_path):
    apps = tmp_path / "apps.toml"
    apps.write_text('[apps.mip]\ncommand = ["a"]\nretries = "twice"\n')
    done = subprocess.run([sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", "127.0.0.1:0",
                           "--data-dir", str(tmp_path / "data"), "--apps", str(apps)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=dict(os.environ))
    assert done.returncode == 2
    assert f"{apps}: apps.mip.retries: must be an integer" in done.stderr


def test_serve_refuses_a_missing_registry_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hosting_service.cli.main", "serve", "--bind", "127.0.0.1:0",
                           "--data-dir", str(tmp_path / "data"), "--apps", str(tmp_path / "nope.toml")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "nope.toml: cannot be read" in done.stderr
