"""What a sync step costs is measured where it is spent, and a writer's own copy of its update is the peers' one.

The exchange hands a worker its own update as its peers will decode it without decoding the
blob it wrote; the claim is that the two are the same values and header, for any vector and
either encoding. A worker's report says its process, and its CPU split into the compute, the
rest of its main thread and the exchange's threads, which `bench train` joins to /proc.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.storage import Storage
from mlcore.training import data
from mlcore.training.coordinator import create_job
from mlcore.training.exchange import decode, encode, encode_read
from mlcore.training.job import PS, JobConfig, JobLayout
from mlcore.training.ps import ParameterServer
from mlcore.training.worker import Worker

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(finite, min_size=0, max_size=300), compress=st.sampled_from(["none", "fp16"]), k=st.integers(1, 9)
)
def test_the_writers_own_copy_is_what_its_peers_decode(values, compress, k):
    vector = torch.tensor(values, dtype=torch.float32)
    header = {"round": 3, "worker": 1, "batch": 7, "k": k, "loss": 0.12345, "comm_s": None, "updates": [{"a": 1}]}
    blob, (own_header, own) = encode_read(vector, header, compress)
    peer_header, peer = decode(blob, "u/3/1")
    assert blob == encode(vector, header, compress)
    assert own_header == peer_header and own.dtype == peer.dtype == torch.float32
    assert torch.equal(own, peer)
    assert not vector.numel() or own.data_ptr() != vector.data_ptr()  # the caller may change its vector later


def _run_workers(storage, config: JobConfig) -> dict[int, dict]:
    """The job's workers in threads of this process, to their end."""
    results, errors = {}, []

    def run(w: int) -> None:
        try:
            results[w] = Worker(Storage(storage.config), config, w, owner=f"{config.job}-w{w}").run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(config.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return results


def test_a_sync_workers_report_names_its_process_and_splits_its_cpu(storage, mnist_root):
    data.upload_mnist(storage, mnist_root)
    config = JobConfig(
        job="step-cost",
        workers=2,
        epochs=1,
        batch_size=64,
        train_limit=512,
        eval_every=4,
        data="s3",
        compress="fp16",
        worker_timeout_s=120.0,
    )
    create_job(storage, config)
    results = _run_workers(storage, config)
    for result in results.values():
        assert result["state"] == "done" and result["pid"] == os.getpid()
        # the compute is part of the main thread's CPU, which is part of the process's
        assert 0 < result["compute_cpu_s"] <= result["main_cpu_s"] <= result["cpu_s"]
        assert result["compute_cpu_s"] <= result["compute_s"] + 0.05


def _ps_in_process(config: dict, storage_config) -> None:
    torch.set_num_threads(2)  # torch's default in an action on a 2-core machine
    ParameterServer(Storage(storage_config), JobConfig.from_dict(config), owner="ps-threads").run()


def test_the_parameter_server_computes_with_the_jobs_threads_not_torchs_default(storage, mnist_root):
    data.upload_mnist(storage, mnist_root)
    config = JobConfig(
        job="ps-threads",
        workers=2,
        epochs=1,
        batch_size=64,
        train_limit=256,
        eval_every=2,
        data="s3",
        topology="ps",
        threads=1,
        worker_timeout_s=120.0,
    )
    create_job(storage, config)
    ps = multiprocessing.get_context("spawn").Process(target=_ps_in_process, args=(config.as_dict(), storage.config))
    ps.start()
    try:
        _run_workers(storage, config)
        ps.join(300)
    finally:
        if ps.is_alive():
            ps.kill()
            ps.join()
    assert ps.exitcode == 0
    stats = storage.get_json(JobLayout(config.job).worker_stats(PS))
    assert stats["state"] == "done" and stats["threads"] == 1 and stats["pid"] == ps.pid
