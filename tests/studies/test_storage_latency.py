"""`bench storage` end to end on a small budget: both servers measured, the scratch folder removed."""

import json

from click.testing import CliRunner

from deployer.cli import cli


def test_bench_storage_small_run(tmp_path):
    out = tmp_path / "storage.json"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "storage",
            "--clients",
            "2",
            "--requests",
            "5",
            "--size-kb",
            "10",
            "--folder",
            str(tmp_path),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # both servers measured, every request answered, the ratios are the measured numbers divided
    for server in ("durable", "moto_in_memory"):
        for op in ("put", "get"):
            assert report[server][op]["n"] == 10 and report[server][op]["errors"] == 0
    assert report["errors"] == 0 and report["conditions"]["object_bytes"] == 10_000
    assert report["ratios"]["put_p50_durable_over_moto"] == round(
        report["durable"]["put"]["p50_ms"] / report["moto_in_memory"]["put"]["p50_ms"], 2
    )
    assert list(tmp_path.iterdir()) == [out]  # the durable store's scratch folder is gone
