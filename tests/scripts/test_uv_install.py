"""`./run`'s installs through uv take the package sources pip is configured with, env over files."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "uv-pip-install.py"


def _load():
    spec = importlib.util.spec_from_file_location("uv_pip_install", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pip_config(tmp_path, monkeypatch):
    """pip sees only this config file and these variables, not the machine's."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\n"
        "extra-index-url = file:///a/simple file:///b/simple\n"
        "find-links = /from/file\n"
        "constraint = /c.txt\n"
        "cert = /ca.pem\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    return config


def test_pips_sources_become_uv_options_and_a_variable_overrides_the_file(pip_config, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/from/env")
    settings = _load().pip_settings()
    assert settings["extra-index-url"] == ["file:///a/simple", "file:///b/simple"]
    assert settings["find-links"] == ["/from/env"]
    assert settings["constraint"] == ["/c.txt"] and settings["cert"] == ["/ca.pem"]


def test_without_uv_beside_python_it_says_so_and_exits_1(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "python"), str(SCRIPT), "nothing"], capture_output=True, text=True)
    assert result.returncode == 1 and "uv is not installed" in result.stderr
