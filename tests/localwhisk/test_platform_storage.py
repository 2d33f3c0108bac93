"""The local platform's storage and state as a user meets them: crashes, permissions, ports, bad folders.

Real platform processes on loopback; the read-only and full state folders are small
tmpfs mounts the tests make themselves (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import sys
import threading

import boto3
import pytest
from botocore.config import Config
from click.testing import CliRunner

from deployer.cli import cli
from localwhisk.settings import Settings
from localwhisk.supervisor import LocalPlatform, SupervisorError


def _s3(info, **config):
    return boto3.client(
        "s3",
        endpoint_url=info.s3_endpoint,
        aws_access_key_id=info.s3_access_key,
        aws_secret_access_key=info.s3_secret_key,
        region_name="us-east-1",
        config=Config(**config),
    )


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_kill_9_during_concurrent_puts_keeps_every_acknowledged_object(tmp_path):
    owner = LocalPlatform(tmp_path / "state")
    info = owner.start()
    try:
        _s3(info).create_bucket(Bucket="crash")
        acked: dict[str, bytes] = {}
        lock, enough = threading.Lock(), threading.Event()

        def writer(n: int) -> None:
            client = _s3(info, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)
            for i in range(200):
                key, body = f"w{n}/{i}", os.urandom(2000 + (i * 37 + n) % 30000)
                try:
                    client.put_object(Bucket="crash", Key=key, Body=body)
                except Exception:
                    return
                with lock:
                    acked[key] = body
                    if len(acked) >= 150:
                        enough.set()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        assert enough.wait(timeout=300), "the writers did not get 150 PUTs acknowledged"
        owner.kill()
        for t in threads:
            t.join(timeout=120)
        info = owner.start()
        client = _s3(info)
        with lock:
            expected = dict(acked)
        assert len(expected) >= 150
        missing = [k for k, body in expected.items() if client.get_object(Bucket="crash", Key=k)["Body"].read() != body]
        assert missing == []
    finally:
        owner.stop()


def test_state_folder_and_files_are_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with LocalPlatform(state) as info:
        c = info.client()
        c.create_action("private", {"kind": "python:3.11", "code": "def main(a):\n    return {'ok': True}\n"})
        c.invoke("private", {"s3_secret_key": "bound"})
        _s3(info).create_bucket(Bucket="private")
        _s3(info).put_object(Bucket="private", Key="k", Body=b"tensor")
        assert _mode(state) == 0o700
        files = ["platform.db", "platform.db-wal", "platform.log", "auth.json", "s3-credentials.json", "platform.json"]
        assert {f: _mode(state / f) for f in files} == {f: 0o600 for f in files}
        objects = state / "objects"
        assert _mode(objects) == 0o700
        stored = [p for p in objects.rglob("*") if p.is_file()]
        assert stored and all(_mode(p) == 0o600 for p in stored)


def test_taken_api_port_fails_at_once_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SupervisorError, match=f"port {port} on 127.0.0.1 is taken"):
            LocalPlatform(tmp_path / "a", port=port).start()
        with pytest.raises(SupervisorError, match=f"port {port} on 127.0.0.1 is taken"):
            LocalPlatform(tmp_path / "b", s3_port=port).start()
        # the platform process itself fails with one line too (a port taken after the supervisor's check)
        for flag in ("port", "s3_port"):
            settings = Settings(tmp_path / "c", port=0, s3_port=0).but(**{flag: port})
            done = subprocess.run(
                [sys.executable, "-m", "localwhisk.server", "--settings", settings.to_json()],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode != 0
            assert (
                done.stderr.strip()
                .splitlines()[-1]
                .endswith(
                    f"port {port} on 127.0.0.1 is taken"
                    + ("; stop what listens there or pick another with --port" if flag == "port" else "")
                )
            )


def _up(state) -> object:
    return CliRunner().invoke(cli, ["up", "--port", "0", "--s3-port", "0"], env={"DEPLOYER_HOME": str(state)})


def test_up_on_a_read_only_state_folder_is_one_line(small_fs):
    ro = small_fs("ro", "1m", read_only=True)
    result = _up(ro / "platform")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(ro / "platform") in lines[0] and "read-only" in lines[0], result.output


def test_up_on_a_full_state_folder_is_one_line(small_fs, fill_fs):
    full = small_fs("full", "1m")
    (full / "platform").mkdir()
    fill_fs(full / "platform")
    result = _up(full / "platform")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(full / "platform") in lines[0] and "full" in lines[0], result.output


def test_storage_env_and_status_give_users_the_keys(tmp_path, monkeypatch):
    state = tmp_path / "state"
    with LocalPlatform(state) as info:
        runner = CliRunner()
        result = runner.invoke(cli, ["storage", "env"], env={"DEPLOYER_HOME": str(state)})
        assert result.exit_code == 0, result.output
        env = {}
        for line in result.output.strip().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
        assert env["AWS_ACCESS_KEY_ID"] == info.s3_access_key and env["AWS_ENDPOINT_URL_S3"] == info.s3_endpoint
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")  # nothing but the exported environment, as aws-cli and boto3 users have it
        client.create_bucket(Bucket="from-env")
        client.put_object(Bucket="from-env", Key="k", Body=b"v")
        assert client.get_object(Bucket="from-env", Key="k")["Body"].read() == b"v"
        status = runner.invoke(cli, ["status", "--json"], env={"DEPLOYER_HOME": str(state)})
        assert f'"s3_access_key": "{info.s3_access_key}"' in status.output


def test_down_says_so_and_fails_when_storage_had_died(tmp_path, monkeypatch):
    from localwhisk import supervisor

    state = tmp_path / "state"
    info, started = supervisor.up(Settings(state, port=0, s3_port=0))
    try:
        assert started and info.s3_pid
        os.kill(info.s3_pid, 9)  # the storage process dies under a running platform
        monkeypatch.setenv("DEPLOYER_HOME", str(state))
        result = CliRunner().invoke(cli, ["down"])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "embedded S3" in lines[0] and "had died" in lines[0], result.output
        assert supervisor.read_info(state) is None
    finally:
        if supervisor.read_info(state) is not None:
            supervisor.down(state)
