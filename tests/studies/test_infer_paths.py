"""`bench infer` end to end on a small budget: every path measured, the ratios computed from them."""

from __future__ import annotations

import os

import pytest

from deployer import manifest
from deployer.commands.ml import MANIFEST
from mlcore.storage import Storage, StorageConfig
from mlcore.train import LATEST_KEY
from studies import infer_paths as bi


def test_bench_infer_measures_all_three_paths(platform, lenet5_augmented, mnist_root):
    # Prepare
    state, _ = lenet5_augmented
    env = {**platform.storage_env, "S3_BUCKET": "bench-infer-tests"}
    # Execute
    report = bi.run(
        [1, 2],
        requests_per_worker=3,
        cold_runs=1,
        in_process_iterations=20,
        state=state,
        apihost=platform.apihost,
        auth=platform.auth,
        storage_env=env,
        root=mnist_root,
        deploy=lambda client, env: manifest.deploy(client, MANIFEST, env=env),
    )
    # Assert
    assert report["in_process"]["latency"]["n"] == 20
    for path in ("flask_torch", "platform_warm"):
        for level in ("1", "2"):
            assert report[path][level]["n"] == 3 * int(level) and report[path][level]["errors"] == 0
    assert report["platform_cold"]["n"] == 1 and report["platform_cold"]["init_time_ms_median"] > 0
    warm, direct = report["platform_warm"]["1"]["p50_ms"], report["in_process"]["latency"]["p50_ms"]
    assert report["ratios"]["platform_warm_p50_over_in_process"] == round(warm / direct, 1)
    cold = report["platform_cold"]["p50_ms"]
    assert report["ratios"]["platform_cold_p50_over_warm_p50"] == round(cold / warm, 1)
    assert not Storage(StorageConfig.from_env(env)).exists(LATEST_KEY), "a benchmark must not replace latest"


def test_the_baseline_server_is_given_up_after_its_timeout(tmp_path):
    # Prepare: a model file nobody writes, so the server blocks reading it and never prints its URL
    state_path = tmp_path / "model.pt"
    os.mkfifo(state_path)
    server = bi.BaselineServer(state_path)
    # Execute / Assert
    with pytest.raises(bi.BenchError, match="did not print its URL within 1 s"):
        server.start(timeout_s=1)
