"""docs/results.md is generated from the benches' JSON: the committed page is what the committed JSON renders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from deployer.cli import cli
from studies.results_page import kind_of, render

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_page_is_what_the_committed_json_renders():
    # Execute
    page = render(DOCS / "data", DOCS / "results.md")
    # Assert: a hand edit of the page, or JSON changed without rendering again, fails here
    assert page == (DOCS / "results.md").read_text()
    assert {kind_of(json.loads(p.read_text())) for p in (DOCS / "data").glob("*.json")} >= {"storage"}


def test_report_writes_the_page_and_check_catches_a_hand_edit(tmp_path):
    # Prepare
    shutil.copytree(DOCS / "data", tmp_path / "data")
    out = tmp_path / "results.md"
    args = ["bench", "report", "--from", str(tmp_path / "data"), "--out", str(out)]
    # Execute
    written = CliRunner().invoke(cli, args)
    checked = CliRunner().invoke(cli, [*args, "--check"])
    out.write_text(out.read_text().replace("| 400 |", "| 401 |", 1))
    edited = CliRunner().invoke(cli, [*args, "--check"])
    # Assert
    assert written.exit_code == 0 and checked.exit_code == 0, written.output + checked.output
    assert out.read_text().count("](data/bench-storage.json)") == 1
    assert edited.exit_code == 1 and edited.output.count("\n") == 1 and "is not what" in edited.output


def test_a_json_no_bench_wrote_is_refused_by_name(tmp_path):
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "empty").mkdir()
    stray = CliRunner().invoke(cli, ["bench", "report", "--from", str(tmp_path), "--out", str(tmp_path / "r.md")])
    empty = CliRunner().invoke(cli, ["bench", "report", "--from", str(tmp_path / "empty"), "--check"])
    assert stray.exit_code == 1 and "notes.json is not a report of" in stray.output and "Traceback" not in stray.output
    assert empty.exit_code == 1 and "holds no *.json" in empty.output
    assert not (tmp_path / "r.md").exists()


def test_a_hostnet_report_renders_with_hostnet_s_own_tables(tmp_path):
    # Prepare: the shape `deployer bench hostnet --json` writes, with one row and a migration
    (tmp_path / "bench-hostnet.json").write_text(json.dumps(hostnet_report()))
    # Execute
    page = render(tmp_path, tmp_path / "results.md")
    # Assert
    assert "## bench hostnet" in page and "| vhost-user | 2 | 2 | 2485 |" in page
    assert "scaling: q=2: 2 host cores" in page and "migration vhost-user (tcg): total 900 ms" in page


def hostnet_report() -> dict:
    small = [{"offered_pps": 10000, "sent_pps": 10000, "delivered_pps": 9990, "loss_percent": 0.1, "bound": "guest"}]
    row = {
        "backend": "vhost-user",
        "queues": 2,
        "vcpus": 2,
        "tcp": {
            "mbps": 2485.0,
            "retransmits": 1,
            "server_nic": {"rx_pps": 5400, "rx_bytes_per_packet": 56000},
            "host_cpu": {"foreign_percent": 3.0},
            "bound": "window-limited",
        },
        "udp": {"mbps": 206.0, "lost_percent": 21.2},
        "latency": {"p50_ms": 1.74, "p90_ms": 2.1, "p99_ms": 20.2},
        "small_packets": small,
        "scaling_note": "2 host cores: 2 rx queues share 1 PMD core(s)",
    }
    conditions = {"accelerator": "tcg", "host_cores": 2, "ovs_pmd_cores": [1], "ovs_userspace_tso": True}
    migration = {
        "qemu": {"total_time_ms": 900, "downtime_ms": 40, "ram_transferred_bytes": 5_000_000},
        "network": {"network_downtime_ms": 120, "lost": 3, "sent": 200},
        "conditions": {"backend": "vhost-user", "accelerator": "tcg"},
        "destination": {"status": "running"},
    }
    bench = {"results": [row], "conditions": {**conditions, "guest": {"cpu_model": "qemu64"}}}
    return {"kind": "hostnet", "bench": bench, "migration": migration}


def test_a_scale_report_and_the_model_render_with_their_growth_curves_and_assumptions(tmp_path):
    # Prepare: the shapes `bench scale --json` and `bench model --json` write, at two sizes and three machine counts
    from studies import cluster_model
    from studies.scale import growth

    points = [{"n": 1000, "get": {"p50_ms": 2.0}}, {"n": 100_000, "get": {"p50_ms": 0.5}}]
    scale = {
        "benchmark": "scale",
        "conditions": {"host_cores": 2},
        "activations": {"points": points, "curves": {"get": growth([1000, 100_000], [2.0, 0.5])}},
    }
    (tmp_path / "bench-scale.json").write_text(json.dumps(scale))
    model = cluster_model.predict(cluster_model.Parts(), [1, 2, 64])
    (tmp_path / "bench-model.json").write_text(json.dumps(model))
    # Execute
    page = render(tmp_path, tmp_path / "results.md")
    # Assert: the scale section before the model's, each curve's growth named, the model's curves to 64 machines
    assert page.index("## bench scale") < page.index("## bench model")
    assert "| 100000 | 0.5 |" in page and "| get | falls | -0.301 |" in page
    assert "| 64 | " in page and "allreduce" in page and "fedavg-openwhisk" in page
    assert "\n7. Nothing fails; no retries;" in page and "\n8. Shared host" in page
