"""manifests/fedavg.yaml: real wskdeploy format, credentials only from the environment, code bundled."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from deployer import manifest
from deployer.errors import ManifestError

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "fedavg.yaml"
ENV = {
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "S3_BUCKET": "fl-bucket",
    "AWS_ACCESS_KEY_ID": "ak",
    "AWS_SECRET_ACCESS_KEY": "sk",
}


def test_client_action_takes_storage_from_the_environment_and_bundles_its_code():
    (package,) = manifest.load(MANIFEST, env=ENV)
    (action,) = package.actions
    assert action.qualified == "fedavg/client"
    assert action.exec_["kind"] == "blackbox" and action.exec_["binary"]
    assert action.exec_["image"] == manifest.DEFAULT_RUNTIME_IMAGE
    assert action.inputs == {
        "s3_endpoint": "http://127.0.0.1:9",
        "s3_bucket": "fl-bucket",
        "s3_access_key": "ak",
        "s3_secret_key": "sk",
    }
    assert action.limits["timeout"] >= 60_000 and action.limits["memory"] >= 512
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(action.exec_["code"]))).namelist()
    assert {"__main__.py", "fedavg/core.py", "fedavg/models.py", "mlcore/storage.py"} <= set(names)


def test_unset_storage_variables_stop_the_deploy():
    with pytest.raises(ManifestError, match="S3_BUCKET"):
        manifest.load(MANIFEST, env={k: v for k, v in ENV.items() if k != "S3_BUCKET"})
