"""`bench exchange` end to end on a small budget: every row measured against a real embedded S3, nothing left behind."""

import json

from click.testing import CliRunner

from deployer.cli import cli


def test_bench_exchange_small_run(tmp_path):
    out = tmp_path / "exchange.json"
    args = ["bench", "exchange", "--workers", "2", "--steps", "4", "--requests", "3", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [c["client"] for c in report["request_costs"]] == ["boto3", "signed"]
    assert [(r["client"], r["workers"]) for r in report["rows"]] == [("boto3", 2), ("signed", 2)]
    update = report["conditions"]["update_bytes"]
    for row in report["rows"]:
        # each worker puts its update and gets its peer's every step, the misses on top
        assert row["requests"] == 4 + row["misses"]
        assert (
            row["bytes_out"] == row["bytes_in"] and abs(row["bytes_out"] - 2 * update) < 128
        )  # their headers are longer
        assert row["wall_ms"] > 0 and row["endpoint_cpu_ms"] >= 0 and row["client_cpu_ms"] > 0


def test_each_topology_runs_its_own_sync_round(tmp_path):
    out = tmp_path / "exchange.json"
    args = ["bench", "exchange", "--workers", "2", "--steps", "5", "--requests", "2", "--clients", "signed"]
    result = CliRunner().invoke(cli, [*args, "--compute-ms", "0", "--topologies", "scatter,ps", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {row["topology"]: row for row in json.loads(out.read_text())["rows"]}
    # scatter: each worker puts its peer's shard, gets its own from the peer, puts the reduced shard, gets the
    # peer's reduced one; ps: each worker puts its update and gets the model, the PS gets both and puts one
    for topology, requests in (("scatter", 2 * 4), ("ps", 2 * 2 + 3)):
        row = rows[topology]
        assert row["workers"] == 2 and row["requests"] == requests + row["misses"] and row["wall_ms"] > 0
