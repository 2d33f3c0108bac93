"""The official OpenWhisk JS client (npm `openwhisk`) against the local platform."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"


def test_official_js_client_works_with_wskprops(platform, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed (the README's set-up installs it with the npm client)")
    if not (JS / "node_modules" / "openwhisk").is_dir():
        pytest.skip(
            "npm package openwhisk is missing: run `npm ci --prefix tests/localwhisk/js` (the README's set-up does)"
        )
    props = tmp_path / "wskprops"
    props.write_text(f"APIHOST={platform.apihost}\nAUTH={platform.auth}\n")
    proc = subprocess.run(["node", str(JS / "compat.js"), str(props)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["result"] == {"sum": 42}
    assert "jscompat" in out["listed"]
    assert out["async"] == {"sum": 2}
    assert out["notFound"] == 404
