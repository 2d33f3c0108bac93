"""The CLI as a user runs it: a real `deployer` process, a real background platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer import target
from deployer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer.cli", *args], env=env, cwd=ROOT, text=True, capture_output=True, timeout=180
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"deployer {' '.join(args)} failed {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OW_", "WSK_", "S3_", "AWS_"))}
    env.update(DEPLOYER_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    yield env
    run(["down"], env, check=False)


def test_up_deploy_invoke_down(cli_env):
    out = run(["up", "--port", "0", "--s3-port", "0"], cli_env).stdout
    assert "started" in out and "APIHOST=http://127.0.0.1:" in out
    props = Path(cli_env["DEPLOYER_HOME"]) / "wskprops"
    assert "AUTH=" in props.read_text()
    assert "already running" in run(["up"], cli_env).stdout
    assert "demo/shout" in run(["deploy", "-m", "manifests/hello.yaml"], cli_env).stdout
    result = run(["invoke", "demo/hello", "-p", "name", "Grace", "--result"], cli_env).stdout
    assert json.loads(result) == {"greeting": "Hello, Grace!"}
    listed = json.loads(run(["activations", "list", "--json"], cli_env).stdout)
    assert listed[0]["name"] == "hello"
    logs = run(["activations", "logs", listed[0]["activationId"]], cli_env).stdout
    assert "greeting Grace" in logs
    assert "demo/hello" in run(["actions", "list"], cli_env).stdout
    status = json.loads(run(["status", "--json"], cli_env).stdout)
    assert status["running"] and status["actions"] == 4
    # the manifest's trigger and rule, fired from the CLI; the trigger's logs name the rule's activation
    fired = run(["triggers", "fire", "greeted", "-p", "name", "Ada"], cli_env).stdout
    assert "rule guest/shout-when-greeted -> guest/demo/shout:" in fired
    trigger_id = fired.split(" with id ")[1].split()[0]
    logs = run(["activations", "logs", trigger_id], cli_env).stdout
    started = logs.strip().rsplit(": ", 1)[1]
    assert logs.startswith("rule guest/shout-when-greeted -> guest/demo/shout: ")
    assert started in run(["activations", "list"], cli_env).stdout
    assert "active" in run(["rules", "list"], cli_env).stdout
    run(["rules", "disable", "shout-when-greeted"], cli_env)
    assert "no active rule" in run(["triggers", "fire", "greeted"], cli_env).stdout
    run(["packages", "bind", "/whisk.system/utils", "myutils", "-p", "lines", '["b", "a"]'], cli_env)
    assert json.loads(run(["invoke", "myutils/sort", "--result"], cli_env).stdout)["lines"] == ["a", "b"]
    assert "stopped" in run(["down"], cli_env).stdout
    assert json.loads(run(["status", "--json"], cli_env).stdout)["running"] is False


def test_user_errors_are_one_line_without_traceback(cli_env, tmp_path):
    run(["up", "--port", "0", "--s3-port", "0"], cli_env)
    cases = [
        (["invoke", "no/such"], "not found"),
        (["deploy", "-m", str(tmp_path / "missing.yaml")], "missing.yaml' does not exist"),
        (["--apihost", "http://127.0.0.1:1", "--auth", "a:b", "actions", "list"], "cannot reach"),
        (["--apihost", "http://127.0.0.1:1", "actions", "list"], "both --apihost and --auth"),
        (["invoke", "demo/hello", "-p", "name", '""', "--result"], "non-empty string"),
    ]
    run(["deploy", "-m", "manifests/hello.yaml"], cli_env)
    for args, expected in cases:
        proc = run(args, cli_env, check=False)
        assert proc.returncode != 0, args
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("packages:\n  p:\n    actions:\n      a:\n        functoin: x\n")
    proc = run(["deploy", "-m", str(bad)], cli_env, check=False)
    assert proc.returncode == 1 and "bad.yaml:5: unknown key 'functoin'" in proc.stderr


def test_target_resolution_order(tmp_path, monkeypatch):
    for key in ("OW_APIHOST", "OW_AUTH", "WSK_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    props = tmp_path / "props"
    props.write_text("APIHOST=https://ow.example:443\nAUTH=u:k\n")
    monkeypatch.setenv("WSK_CONFIG_FILE", str(props))
    assert target.resolve().source == str(props)
    monkeypatch.setenv("OW_APIHOST", "http://env:1")
    monkeypatch.setenv("OW_AUTH", "e:k")
    assert target.resolve().apihost == "http://env:1"
    assert target.resolve("http://flag:2", "f:k").source == "flags"
    monkeypatch.delenv("OW_AUTH")
    with pytest.raises(ConfigError, match="OW_APIHOST and OW_AUTH"):
        target.resolve()
    monkeypatch.delenv("OW_APIHOST")
    monkeypatch.setenv("WSK_CONFIG_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        target.resolve()
    monkeypatch.delenv("WSK_CONFIG_FILE")
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "nothing-running"))
    with pytest.raises(ConfigError, match="deployer up"):
        target.resolve(start_local=False)


def test_a_bad_manifest_is_refused_before_any_platform_starts(cli_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("packages:\n  p:\n    actions:\n      a:\n        functoin: x\n")
    for args, status, expected in (
        (["deploy", "-m", str(tmp_path / "missing.yaml")], 2, "missing.yaml' does not exist"),
        (["deploy", "-m", str(bad)], 1, "bad.yaml:5: unknown key 'functoin'"),
        (["undeploy", "-m", str(bad)], 1, "bad.yaml:5: unknown key 'functoin'"),
    ):
        proc = run(args, cli_env, check=False)
        assert proc.returncode == status and expected in proc.stderr
    assert not (Path(cli_env["DEPLOYER_HOME"]) / "platform" / "platform.json").exists()
    assert json.loads(run(["status", "--json"], cli_env).stdout)["running"] is False
