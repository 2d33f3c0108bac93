"""`deployer runtime build`: the runtime image's report, its cache, and its one-line errors."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from deployer import runtime_image as ri
from deployer.cli import cli
from localwhisk.entities import kinds

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # the session's first test may build the image (minutes)


def test_the_report_names_the_image_and_its_pinned_versions(runtime_build):
    pins = dict(
        line.split("==")
        for line in ri.REQUIREMENTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert runtime_build["tag"] == ri.DEFAULT_TAG
    assert runtime_build["image_id"] == ri.image_id(ri.DEFAULT_TAG)
    assert runtime_build["size_bytes"] == ri.image_size(ri.DEFAULT_TAG) > 0
    versions = runtime_build["versions"]
    assert versions["python"].startswith("3.11")
    for dist in ("torch", "torchvision", "boto3", "numpy", "pillow", "httptools"):
        assert versions[dist].split("+")[0] == pins[dist], dist
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ri.DEFAULT_TAG],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert labels[ri.LABEL] == "1"
    assert ri.image_id(runtime_build["base_image"])


def test_a_second_build_with_nothing_changed_is_cached(runtime_builds, tmp_path):
    report_path = tmp_path / "build.json"
    result = CliRunner().invoke(cli, ["runtime", "build", "--json", str(report_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reports = json.loads(report_path.read_text())
    assert list(reports) == ["python", "nodejs"]
    for runtime, report in reports.items():
        assert report["cached"] is True and report["layers_cached"] and report["base_reused"], runtime
        assert report["image_id"] == runtime_builds[runtime]["image_id"]
    assert reports["python"]["wheelhouse_reused"] is True


def test_the_nodejs_image_holds_debians_node_on_a_base_of_its_own(runtime_builds):
    report = runtime_builds["nodejs"]
    assert report["tag"] == ri.NODEJS_TAG == kinds.NODEJS_IMAGE
    assert report["versions"] == {"node": report["versions"]["node"]} and report["versions"]["node"].startswith("18.")
    assert report["base_image"] == ri.base_image_tag(ri.NODEJS_BASE_PACKAGES) != runtime_builds["python"]["base_image"]
    assert report["wheelhouse"] is None and report["size_bytes"] < 1 << 30
    labels = json.loads(ri.docker("image", "inspect", "--format", "{{json .Config.Labels}}", ri.NODEJS_TAG).stdout)
    assert labels[ri.LABEL] == "1" and labels[f"{ri.LABEL}.runtime"] == "nodejs"


def test_one_runtime_is_built_alone_when_asked(runtime_builds):
    result = CliRunner().invoke(cli, ["runtime", "build", "--runtime", "nodejs", "--json", "-"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert list(reports) == ["nodejs"] and reports["nodejs"]["cached"] is True


@pytest.mark.parametrize(
    "args, option",
    [
        (["--tag", "x/y:1"], "'--tag'"),
        (["--runtime", "python", "--runtime", "nodejs", "--tag", "x/y:1"], "'--tag'"),
        (["--runtime", "nodejs", "--base-image", "x/y:1"], "'--base-image' / '--wheelhouse'"),
        (["--runtime", "nodejs", "--no-wheelhouse"], "'--base-image' / '--wheelhouse'"),
        (["--runtime", "cobol"], "'--runtime'"),
    ],
)
def test_options_that_fit_no_image_are_refused_naming_the_option(args, option):
    result = CliRunner().invoke(cli, ["runtime", "build", *args])
    assert result.exit_code == 2
    assert option in result.output.strip().splitlines()[-1]


def test_docker_missing_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setenv("DEPLOYER_DOCKER", "/nonexistent/docker")
    result = CliRunner().invoke(cli, ["runtime", "build"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: docker is not installed: run `./run setup` as root (installs docker.io and starts dockerd)"
    ]


def test_engine_not_running_is_one_line_naming_the_fix(monkeypatch, tmp_path):
    if not ri.shutil.which("docker"):
        pytest.skip("docker mode: no docker client")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(ri.DockerUnavailable, match="not running .*start-dockerd.sh"):
        ri.check_docker()


def test_the_mirror_is_read_from_apt_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert ri.debian_mirror(tmp_path) == ri.DEFAULT_MIRROR
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert ri.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert ri.debian_mirror(tmp_path) == "http://other.example/debian"


def test_the_wheelhouse_key_follows_the_requirements(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("torch==2.14.1\n# a comment\n")
    b.write_text("torch==2.14.1\n")
    assert ri.requirements_hash(a) == ri.requirements_hash(b)
    b.write_text("torch==2.14.2\n")
    assert ri.requirements_hash(a) != ri.requirements_hash(b)


def test_the_wheelhouse_server_is_on_loopback_and_stops_with_the_build(tmp_path):
    import requests

    (tmp_path / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    with ri.serve_folder(tmp_path, preferred_port=0) as url:
        assert url.startswith("http://127.0.0.1:")
        assert "pkg-1.0-py3-none-any.whl" in requests.get(url, timeout=10).text
        assert requests.get(url + "pkg-1.0-py3-none-any.whl", timeout=10).content == b"wheel"
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=10)
