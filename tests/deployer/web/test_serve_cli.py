"""`deployer serve` as a user starts it: a real process on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import requests
from PIL import Image

from mlcore.mnist import load_mnist

ROOT = Path(__file__).resolve().parents[3]


def test_serve_classifies_an_upload_through_the_platform(platform, deployed_infer, web_storage, mnist_root):
    env = {**os.environ, **platform.storage_env, "S3_BUCKET": web_storage.bucket, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployer.cli",
            "--apihost",
            platform.apihost,
            "--auth",
            platform.auth,
            "serve",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("open http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1].rstrip("/")
        images, labels = load_mnist(train=False, root=mnist_root)
        buf = io.BytesIO()
        Image.fromarray(images[7].numpy()).save(buf, "PNG")
        answer = requests.post(url + "/api/predict", files={"image": ("d.png", buf.getvalue())}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["digit"] == int(labels[7])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_the_action_says_what_to_run(platform):
    from click.testing import CliRunner

    from deployer import manifest
    from deployer.cli import cli

    manifest.undeploy(platform.client, ROOT / "manifests" / "infer.yaml", env={})
    result = CliRunner().invoke(cli, ["--apihost", platform.apihost, "--auth", platform.auth, "serve"])
    assert result.exit_code == 1
    assert "mnist/infer is not deployed" in result.output and "deployer demo" in result.output


def test_serve_refuses_a_public_url_that_is_not_http():
    from click.testing import CliRunner

    from deployer.cli import cli

    result = CliRunner().invoke(
        cli, ["--apihost", "http://127.0.0.1:9", "--auth", "u:k", "serve", "--public-url", "ftp://box:8080"]
    )
    assert result.exit_code == 2
    assert "'ftp://box:8080' is not an http(s)://host[:port] URL" in result.output
