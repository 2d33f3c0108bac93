"""The wskdeploy reader: real format in, clear errors with line numbers out."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from deployer import manifest
from deployer.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "manifest.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def action_dir(tmp_path):
    d = tmp_path / "act"
    d.mkdir()
    (d / "__main__.py").write_text("import mlcore.storage\ndef main(a):\n    return a\n")
    return d


def test_every_project_manifest_loads_and_references_exist():
    env = {
        k: "x"
        for k in (
            "S3_ENDPOINT_URL",
            "S3_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "MODEL_VERSION",
            "DEPLOYER_RUNTIME_IMAGE",
        )
    }
    found = sorted((ROOT / "manifests").glob("*.yaml"))
    assert found
    for path in found:
        packages = manifest.load(path, env=manifest._Permissive(env))
        assert packages and all(p.actions or p.sequences for p in packages), path


def test_folder_is_zipped_with_bundled_project_packages(tmp_path, action_dir):
    m = write(
        tmp_path,
        """
packages:
  pkg:
    actions:
      act:
        function: act
        runtime: python:3.11
        main: main
        limits: {timeout: 5000, memorySize: 512, logSize: 1}
        web: true
""",
    )
    (spec,) = manifest.load(m, env={})[0].actions
    assert spec.exec_["kind"] == "python:3.11" and spec.exec_["binary"] is True
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(spec.exec_["code"]))).namelist()
    assert "__main__.py" in names and "mlcore/storage.py" in names and not any("fedavg" in n for n in names)
    assert spec.limits == {"timeout": 5000, "memory": 512, "logs": 1}
    assert spec.annotations["web-export"] is True


def test_env_interpolation_both_forms_and_typed_inputs(tmp_path, action_dir):
    m = write(
        tmp_path,
        """
project:
  name: p
  packages:
    pkg:
      inputs:
        endpoint: $S3_ENDPOINT_URL
      actions:
        act:
          function: act
          inputs:
            bucket: "prefix-${S3_BUCKET}-suffix"
            typed: {type: integer, value: 3, description: three}
""",
    )
    (pkg,) = manifest.load(m, env={"S3_ENDPOINT_URL": "http://e", "S3_BUCKET": "b"})
    assert pkg.inputs == {"endpoint": "http://e"}
    assert pkg.actions[0].inputs == {"bucket": "prefix-b-suffix", "typed": 3}


def test_unset_variable_names_line(tmp_path, action_dir):
    m = write(
        tmp_path,
        "packages:\n  pkg:\n    actions:\n      act:\n        function: act\n"
        "        inputs:\n          secret: $NOT_SET_ANYWHERE\n",
    )
    with pytest.raises(ManifestError, match=r"manifest.yaml:7: \$NOT_SET_ANYWHERE is not set"):
        manifest.load(m, env={})


def test_unknown_key_names_line(tmp_path, action_dir):
    m = write(
        tmp_path,
        "packages:\n  pkg:\n    actions:\n      act:\n        function: act\n"
        "        limits:\n          timeout: 100\n          memory: 256\n",
    )
    with pytest.raises(ManifestError, match=r"manifest.yaml:8: unknown key 'memory' in limits"):
        manifest.load(m, env={})
    m = write(tmp_path, "packages:\n  pkg:\n    actoins: {}\n")
    with pytest.raises(ManifestError, match=r":3: unknown key 'actoins'"):
        manifest.load(m, env={})


def test_malformed_yaml_and_missing_function(tmp_path):
    m = write(tmp_path, "packages:\n  pkg:\n    actions: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        manifest.load(m, env={})
    m = write(tmp_path, "packages:\n  pkg:\n    actions:\n      a:\n        function: missing/dir\n")
    with pytest.raises(ManifestError, match=r":5: function missing/dir does not exist"):
        manifest.load(m, env={})
    empty = tmp_path / "empty"
    empty.mkdir()
    m = write(tmp_path, "packages:\n  pkg:\n    actions:\n      a:\n        function: empty\n")
    with pytest.raises(ManifestError, match="no __main__.py"):
        manifest.load(m, env={})


def test_bad_limit_type_and_unsupported_entities(tmp_path, action_dir):
    m = write(
        tmp_path,
        "packages:\n  pkg:\n    actions:\n      act:\n        function: act\n"
        "        limits:\n          timeout: soon\n",
    )
    with pytest.raises(ManifestError, match=r":7: limit timeout must be an integer"):
        manifest.load(m, env={})
    m = write(tmp_path, "packages:\n  pkg:\n    apis:\n      a: {}\n")
    with pytest.raises(ManifestError, match=r":3: apis are valid wskdeploy but not supported"):
        manifest.load(m, env={})
    m = write(tmp_path, "packages:\n  pkg:\n    triggers:\n      t:\n        feed: /whisk.system/alarms/alarm\n")
    with pytest.raises(ManifestError, match=r":4: trigger t has a feed: feeds are valid wskdeploy but not supported"):
        manifest.load(m, env={})
    m = write(tmp_path, "packages:\n  pkg:\n    rules:\n      r:\n        trigger: t\n")
    with pytest.raises(ManifestError, match=r":4: rule r needs `trigger:` and `action:`"):
        manifest.load(m, env={})


def test_triggers_rules_and_nodejs_actions(tmp_path, action_dir):
    (tmp_path / "hi.js").write_text("function main(a) { return a }")
    m = write(
        tmp_path,
        """
packages:
  pkg:
    actions:
      js:
        function: hi.js
    triggers:
      t:
        inputs:
          x: 1
    rules:
      r1:
        trigger: t
        action: js
      r2:
        trigger: t
        action: /whisk.system/utils/echo
""",
    )
    (pkg,) = manifest.load(m, env={})
    assert pkg.actions[0].exec_ == {"kind": "nodejs:default", "code": "function main(a) { return a }", "binary": False}
    assert [(t.name, t.inputs) for t in pkg.triggers] == [("t", {"x": 1})]
    assert [(r.name, r.trigger, r.action) for r in pkg.rules] == [
        ("r1", "t", "/_/pkg/js"),
        ("r2", "t", "/whisk.system/utils/echo"),
    ]


def test_sequences_and_docker(tmp_path, action_dir):
    m = write(
        tmp_path,
        """
packages:
  pkg:
    actions:
      act:
        function: act
        docker: deployer/action-python-ml:1.0
    sequences:
      seq:
        actions: act, other/thing
""",
    )
    (pkg,) = manifest.load(m, env={})
    assert pkg.actions[0].exec_["kind"] == "blackbox" and pkg.actions[0].exec_["image"].startswith("deployer/")
    assert pkg.sequences[0].exec_ == {"kind": "sequence", "components": ["/_/pkg/act", "/_/other/thing"]}


def test_deployment_file_overrides_inputs(tmp_path, action_dir):
    m = write(
        tmp_path,
        "project:\n  name: p\n  packages:\n    pkg:\n      actions:\n        act:\n"
        "          function: act\n          inputs:\n            a: 1\n            b: 2\n",
    )
    d = write(
        tmp_path,
        "project:\n  name: p\n  packages:\n    pkg:\n      actions:\n        act:\n"
        "          inputs:\n            b: $B_VALUE\n",
        name="deployment.yaml",
    )
    (pkg,) = manifest.load(m, d, env={"B_VALUE": "from-env"})
    assert pkg.actions[0].inputs == {"a": 1, "b": "from-env"}
    bad = write(
        tmp_path,
        "project:\n  packages:\n    pkg:\n      actions:\n        act:\n          limits: {}\n",
        name="bad.yaml",
    )
    with pytest.raises(ManifestError, match=r"bad.yaml:6: unknown key 'limits'"):
        manifest.load(m, bad, env={})
