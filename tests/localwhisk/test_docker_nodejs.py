"""Node.js actions in docker mode: each runs in the kind's image (kinds.NODEJS_IMAGE), not as a process of the
host's node, with its memory as the container's cgroup, its logs, zip actions and stem cells, as Python's do.

An action proves where it ran: its hostname is a container that `docker ps` lists with the platform's label,
its node is the image's (Debian's 18.x; the host's is another) and its cgroup's limit is its memory.
"""

from __future__ import annotations

import base64
import io
import time
import zipfile

import pytest
import requests

from deployer.errors import ActivationFailedError
from localwhisk.entities import kinds
from localwhisk.invoker import docker_container as dc
from localwhisk.invoker.factory import platform_id
from localwhisk.supervisor import LocalPlatform

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # the session's first test may build the images

STEM = "nodejs:20@256x1"
WHERE = """
const fs = require('fs')
const os = require('os')
function where () {
  let limit = null
  for (const p of ['/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max']) {
    try { limit = Number(fs.readFileSync(p, 'utf8').trim()); break } catch (err) {}
  }
  return { hostname: os.hostname(), node: process.versions.node, limit }
}
"""
PROBE = (
    WHERE
    + """
const http = require('http')
function main (args) {
  console.log('hello from ' + os.hostname())
  console.error('and to stderr')
  const url = new URL(process.env.__OW_API_HOST + '/api/v1/namespaces/_/actions')
  const auth = Buffer.from(process.env.__OW_API_KEY).toString('base64')
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { Authorization: 'Basic ' + auth } }, res => {
      let body = ''
      res.on('data', chunk => { body += chunk })
      res.on('end', () => resolve({ ...where(), names: JSON.parse(body).map(a => a.name) }))
    }).on('error', reject)
  })
}
"""
)


@pytest.fixture(scope="module")
def docker_platform(runtime_image, tmp_path_factory):
    state = tmp_path_factory.mktemp("nodejs") / "state"
    with LocalPlatform(state, containers="docker", prewarm=STEM) as info:
        yield info
    assert dc.leftovers(platform_id(state)) == {"containers": [], "networks": []}


def _containers(info, *filters: str) -> list[str]:
    """Short ids of the platform's running containers of the Node.js image (`docker ps`, as a user would look)."""
    args = ["ps", "--filter", f"label={dc.LABEL}={platform_id(info.state_dir)}"]
    args += ["--filter", f"ancestor={kinds.NODEJS_IMAGE}", *(a for f in filters for a in ("--filter", f))]
    return dc._docker(*args, "--format", "{{.ID}}").stdout.split()


def _invoker(info) -> dict:
    return requests.get(info.apihost + "/api/v1", timeout=10).json()["invoker"]


def _in_the_image(out: dict, memory_mb: int) -> None:
    assert out["node"].split(".")[0] == "18"  # Debian bookworm's, in the image; not the host's node
    assert out["limit"] == memory_mb * 1024 * 1024


def test_a_nodejs_action_runs_in_a_container_of_its_image_with_its_logs_and_reaches_the_api(docker_platform):
    c = docker_platform.client()
    c.create_action(
        "where", {"kind": "nodejs:20", "code": PROBE}, limits={"memory": 192}, annotations={"provide-api-key": True}
    )
    record = c.invoke("where", {})
    out = record["response"]["result"]
    _in_the_image(out, 192)
    assert out["hostname"] in _containers(docker_platform)
    assert "where" in out["names"]  # the API on the host's loopback, from inside the container
    logs = c.get_activation(record["activationId"])["logs"]
    assert sorted(line.split(" ", 1)[1] for line in logs) == [
        "stderr: and to stderr",
        f"stdout: hello from {out['hostname']}",
    ]


def test_a_nodejs_memory_hog_is_killed_by_the_cgroup_and_reported_as_openwhisk_does(docker_platform):
    c = docker_platform.client()
    hog = (
        WHERE + "function main (args) {\n"
        "  const blocks = []\n"  # Buffers live outside V8's heap: the cgroup, not node, sets the limit
        "  for (let i = 0; i < args.blocks; i++) blocks.push(Buffer.alloc(16 << 20, 1))\n"
        "  return { ...where(), n: blocks.length }\n"
        "}\n"
    )
    c.create_action("hog", {"kind": "nodejs:20", "code": hog}, limits={"memory": 128})
    _in_the_image(c.invoke("hog", {"blocks": 0}, result=True), 128)
    with pytest.raises(ActivationFailedError) as info:
        c.invoke("hog", {"blocks": 40})
    assert info.value.result["error"] == "The action exhausted its memory and was aborted."
    assert info.value.activation["response"]["status"] == "action developer error"
    assert c.invoke("hog", {"blocks": 1}, result=True)["n"] == 1  # a new container serves the next one


def test_a_nodejs_zip_action_with_package_json_and_a_module_runs_in_the_image(docker_platform):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("package.json", '{"name": "zipped", "main": "lib/entry.js"}')
        zf.writestr(
            "lib/entry.js",
            WHERE + "const { twice } = require('./twice')\n"
            "exports.main = args => ({ ...where(), twice: twice(args.n), cwd: process.cwd() })\n",
        )
        zf.writestr("lib/twice.js", "exports.twice = n => 2 * n\n")
    c = docker_platform.client()
    code = base64.b64encode(buf.getvalue()).decode()
    c.create_action("zipped", {"kind": "nodejs:18", "code": code, "binary": True}, limits={"memory": 128})
    out = c.invoke("zipped", {"n": 21}, result=True)
    _in_the_image(out, 128)
    assert out["twice"] == 42


def test_a_nodejs_stem_cell_container_takes_the_first_cold_start(docker_platform):
    deadline = time.monotonic() + 120
    while _invoker(docker_platform)["prewarmed_by_spec"][STEM] < 1:  # started in the background, refilled after use
        assert time.monotonic() < deadline, "no Node.js stem cell container came up"
        time.sleep(0.1)
    stems = _containers(docker_platform, f"label={dc.KEY_LABEL}=stem cell")  # a label a stem cell keeps once used
    hits = _invoker(docker_platform)["prewarm_hits"]
    c = docker_platform.client()
    c.create_action("first", {"kind": "nodejs:22", "code": WHERE + "const main = where\n"}, limits={"memory": 256})
    record = c.invoke("first", {})
    _in_the_image(record["response"]["result"], 256)
    assert record["response"]["result"]["hostname"] in stems  # a stem cell became the action's container
    assert next(a["value"] for a in record["annotations"] if a["key"] == "initTime") is not None
    assert _invoker(docker_platform)["prewarm_hits"] == hits + 1
