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
        assert row["bytes_out"] == row["bytes_in"] and abs(row["bytes_out"] - 2 * update) < 64  # headers differ
        assert row["wall_ms"] > 0 and row["endpoint_cpu_ms"] >= 0 and row["client_cpu_ms"] > 0
