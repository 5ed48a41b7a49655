"""Configuration: one place (hosting_service/config.py), documented, depending on nothing it configures."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from conftest import REPO
from hosting_service.config import ENV_PREFIX, Settings


def test_every_setting_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    variables = [ENV_PREFIX + f.metadata["env"] for f in fields(Settings)]
    assert [v for v in variables if f"`{v}`" not in readme] == []


def test_config_imports_none_of_the_layers_it_configures():
    code = ("import sys, hosting_service.config as c; c.Settings.from_env({'DICOM_HOST_OUTPUT_PROTOCOLS': 'http'}); "
            "print(sorted(m for m in sys.modules if m.startswith('hosting_service.') and m != 'hosting_service.config'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # only the vocabulary its values are made of (model.Rectangle, and the State enum model uses)
    assert set(eval(loaded)) <= {"hosting_service.model", "hosting_service.states"}, loaded


@pytest.mark.parametrize("variable, value", [("READ_TIMEOUT", "0"), ("MAX_CONNECTIONS", "-1"),
                                             ("READ_TIMEOUT", "soon")])
def test_bad_server_limits_are_refused_by_name(variable, value):
    with pytest.raises(ValueError, match=ENV_PREFIX + variable):
        Settings.from_env({ENV_PREFIX + variable: value})
