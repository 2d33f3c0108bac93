"""The round loop on a small real MNIST slice: learning, executors agreeing, resume, failing clients."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fedavg.core import ClientConfig, ClientFailure, ClientResult, ClientTask, client_seed, fedavg, initial_state
from fedavg.errors import CheckpointError, FedAvgError
from fedavg.executors.process import ProcessExecutor
from fedavg.executors.serial import SerialExecutor
from fedavg.models import build_model
from fedavg.partition import make_partition
from fedavg.run import RunConfig, load_checkpoint, run
from mlcore import compute, weights

SMALL = RunConfig(
    model="2nn", clients=8, frac=0.5, epochs=1, batch_size=10, lr=0.05, partition="iid", rounds=3, seed=11
)


@pytest.fixture(scope="module")
def process_executor(small_mnist):
    """One pool for the module: spawning workers (each importing torch) is the slow part."""
    with ProcessExecutor(
        small_mnist.train_images, small_mnist.train_labels, workers=2, threads_per_worker=1
    ) as executor:
        yield executor


def serial(data):
    return SerialExecutor(data.train_images, data.train_labels, num_threads=1)


def test_a_few_rounds_raise_accuracy_well_above_chance(small_mnist):
    with serial(small_mnist) as executor:
        report, _ = run(dataclasses.replace(SMALL, epochs=2, lr=0.1, rounds=4), executor, small_mnist)
    accs = [r["test_acc"] for r in report["rounds"]]
    assert len(accs) == 4
    assert accs[-1] > 0.7, accs
    assert report["failed_clients"] == 0
    assert all(len(r["clients"]) == 4 for r in report["rounds"])


def test_same_seed_same_weights_other_seed_other_weights(small_mnist):
    with serial(small_mnist) as executor:
        a, _ = run(dataclasses.replace(SMALL, rounds=2), executor, small_mnist)
        b, _ = run(dataclasses.replace(SMALL, rounds=2), executor, small_mnist)
        c, _ = run(dataclasses.replace(SMALL, rounds=2, seed=12), executor, small_mnist)
    assert a["final_state_sha256"] == b["final_state_sha256"] != c["final_state_sha256"]


def test_serial_and_process_executors_give_identical_weights(small_mnist, process_executor):
    config = dataclasses.replace(SMALL, partition="shards", rounds=2)
    with serial(small_mnist) as executor:
        expected, expected_state = run(config, executor, small_mnist)
    got, got_state = run(config, process_executor, small_mnist)
    assert got["final_state_sha256"] == expected["final_state_sha256"]
    assert all((got_state[k] == expected_state[k]).all() for k in expected_state)
    assert [r["test_acc"] for r in got["rounds"]] == [r["test_acc"] for r in expected["rounds"]]


def test_resume_equals_an_uninterrupted_run(small_mnist, tmp_path):
    config = dataclasses.replace(SMALL, rounds=4)
    with serial(small_mnist) as executor:
        whole, _ = run(config, executor, small_mnist, checkpoint_dir=tmp_path / "whole")
        run(dataclasses.replace(config, rounds=2), executor, small_mnist, checkpoint_dir=tmp_path / "split")
        _, saved = load_checkpoint(tmp_path / "split")
        assert len(saved["rounds"]) == 2
        resumed, _ = run(config, executor, small_mnist, checkpoint_dir=tmp_path / "split", resume=True)
    assert resumed["final_state_sha256"] == whole["final_state_sha256"]
    assert [r["test_acc"] for r in resumed["rounds"]] == [r["test_acc"] for r in whole["rounds"]]


def test_resume_refuses_another_configuration_or_a_missing_checkpoint(small_mnist, tmp_path):
    with serial(small_mnist) as executor:
        run(dataclasses.replace(SMALL, rounds=1), executor, small_mnist, checkpoint_dir=tmp_path)
        with pytest.raises(CheckpointError, match="another configuration"):
            run(dataclasses.replace(SMALL, lr=0.2), executor, small_mnist, checkpoint_dir=tmp_path, resume=True)
        with pytest.raises(CheckpointError, match="no checkpoint"):
            run(SMALL, executor, small_mnist, checkpoint_dir=tmp_path / "nothing", resume=True)


@pytest.mark.parametrize("executor_kind", ["serial", "process"])
def test_a_failing_client_is_left_out_and_the_average_reweighted(small_mnist, executor_kind, request):
    # Prepare: every client takes part (C = 1); client 2 has no examples, so its update fails
    config = dataclasses.replace(SMALL, clients=4, frac=1.0, rounds=1)
    parts = make_partition("iid", small_mnist.train_labels.numpy(), 4, seed=0)
    parts[2] = np.array([], dtype=np.int64)
    if executor_kind == "serial":
        executor = serial(small_mnist)
    else:
        executor = request.getfixturevalue("process_executor")
    # Execute
    report, state = run(config, executor, small_mnist, parts=parts)
    # Assert: recorded, and the average is over the three others, weighted by their sizes
    record = report["rounds"][0]
    assert [f["client"] for f in record["failed"]] == [2]
    assert "no examples" in record["failed"][0]["error"]
    assert record["num_examples"] == sum(len(parts[k]) for k in (0, 1, 3))
    start = initial_state(config.model, config.seed)
    with serial(small_mnist) as reference:
        tasks = [ClientTask(k, 1, client_seed(config.seed, 1, k), parts[k], config.client_config()) for k in (0, 1, 3)]
        updates = reference.run_round(tasks, start)
    assert all(isinstance(u, ClientResult) for u in updates)
    expected = fedavg(updates)
    assert all(np.array_equal(state[k].numpy(), expected[k].numpy()) for k in expected)


@pytest.mark.parametrize("executor_kind", ["serial", "process"])
def test_a_client_failing_unforeseen_is_left_out_with_the_floats_of_fedavg_over_the_others(
    small_mnist, executor_kind, request
):
    # Prepare: client 1 holds an index before the training set, so it fails only once it runs, after client 0 was folded
    config = dataclasses.replace(SMALL, clients=4, frac=1.0, rounds=1)
    parts = make_partition("iid", small_mnist.train_labels.numpy(), 4, seed=0)
    parts[1] = np.array([0, -1], dtype=np.int64)
    executor = serial(small_mnist) if executor_kind == "serial" else request.getfixturevalue("process_executor")
    # Execute
    report, state = run(config, executor, small_mnist, parts=parts)
    # Assert: the others averaged over their own examples, exactly as fedavg of their updates
    record = report["rounds"][0]
    assert [f["client"] for f in record["failed"]] == [1] and "outside" in record["failed"][0]["error"]
    assert record["num_examples"] == sum(len(parts[k]) for k in (0, 2, 3))
    start = initial_state(config.model, config.seed)
    with serial(small_mnist) as reference:
        tasks = [ClientTask(k, 1, client_seed(config.seed, 1, k), parts[k], config.client_config()) for k in (0, 2, 3)]
        expected = fedavg(reference.run_round(tasks, start))
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_a_round_where_every_client_fails_keeps_the_weights(small_mnist):
    config = dataclasses.replace(SMALL, clients=2, frac=1.0, rounds=1)
    parts = [np.array([], dtype=np.int64), np.array([], dtype=np.int64)]
    with serial(small_mnist) as executor:
        report, state = run(config, executor, small_mnist, parts=parts)
        outcome = executor.run_round([ClientTask(0, 1, 0, parts[0], ClientConfig("2nn"))], state)
    assert isinstance(outcome[0], ClientFailure)
    start = initial_state(config.model, config.seed)
    assert all((state[k] == start[k]).all() for k in start)
    assert len(report["rounds"][0]["failed"]) == 2


def test_rounds_where_every_client_fails_stop_the_run_with_the_cause(small_mnist, tmp_path):
    config = dataclasses.replace(SMALL, clients=2, frac=1.0, rounds=10)
    parts = [np.array([], dtype=np.int64), np.array([], dtype=np.int64)]
    with serial(small_mnist) as executor:
        with pytest.raises(FedAvgError, match="no client returned an update in 2 rounds.*no examples"):
            run(config, executor, small_mnist, parts=parts, max_idle_rounds=2, checkpoint_dir=tmp_path)
    _, saved = load_checkpoint(tmp_path)
    assert len(saved["rounds"]) == 2


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class _KillingExecutor:
    """Wraps a process executor and SIGKILLs one of its workers: during round 1, and between rounds 2 and 3.

    The round-1 kill waits for a worker to burn CPU, which an idle pool worker never does: the
    kill then lands inside a client update however fast or slow the machine is.
    """

    def __init__(self, inner: ProcessExecutor) -> None:
        self.inner = inner
        self.name = inner.name
        self.eval_threads = 1
        self.rounds = 0
        self.killed_mid_round: list[int] = []
        self._watcher: threading.Thread | None = None

    def _kill_first_busy(self, idle: dict[int, int]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for pid, ticks in idle.items():
                if _cpu_ticks(pid) > ticks:
                    os.kill(pid, signal.SIGKILL)
                    self.killed_mid_round.append(pid)
                    return
            time.sleep(0.005)

    def _kill_one(self) -> int:
        pid = self.inner.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def run_round(self, tasks, state):
        self.rounds += 1
        if self.rounds == 1:
            idle = {pid: _cpu_ticks(pid) for pid in self.inner.worker_pids()}
            self._watcher = threading.Thread(target=self._kill_first_busy, args=(idle,), daemon=True)
            self._watcher.start()
        if self.rounds == 2:
            self._watcher.join()
        if self.rounds == 3:
            pid = self._kill_one()
            deadline = time.monotonic() + 10
            while pid in self.inner.worker_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.inner.run_round(tasks, state)


def test_killed_worker_processes_never_crash_a_run(small_mnist):
    # Prepare: 4 CNN clients per round on 2 workers, so round 1 takes seconds and the kill lands inside it
    config = dataclasses.replace(SMALL, model="cnn", clients=4, frac=1.0, epochs=2, rounds=3)
    with ProcessExecutor(small_mnist.train_images, small_mnist.train_labels, workers=2) as executor:
        # Execute
        killing = _KillingExecutor(executor)
        report, _ = run(config, killing, small_mnist)
        survivors = executor.worker_pids()
    # Assert: round 1 lost its clients to the dead pool and says so; rounds 2 and 3 ran on fresh workers
    first, second, third = report["rounds"]
    assert len(killing.killed_mid_round) == 1
    assert first["failed"] and all("worker process died" in f["error"] for f in first["failed"])
    assert second["failed"] == [] and third["failed"] == []
    assert third["test_acc"] > 0.5
    assert len(survivors) == 2


BF16 = RunConfig(
    model="cnn",
    clients=8,
    frac=0.25,
    epochs=1,
    batch_size=10,
    lr=0.05,
    partition="iid",
    rounds=2,
    seed=4,
    precision="bf16",
    channels_last=True,
)


def test_bf16_channels_last_serial_and_process_give_identical_weights(small_mnist, process_executor):
    with serial(small_mnist) as executor:
        expected, expected_state = run(BF16, executor, small_mnist)
    got, got_state = run(BF16, process_executor, small_mnist)
    assert got["final_state_sha256"] == expected["final_state_sha256"]
    assert all(got_state[k].is_contiguous() and (got_state[k] == expected_state[k]).all() for k in expected_state)
    assert got["config"]["precision"] == "bf16" and "native_bf16" in got["arithmetic"]


def test_bf16_trains_in_fp32_master_weights_and_learns_like_fp32(small_mnist):
    fp32 = dataclasses.replace(BF16, precision="fp32", channels_last=False)
    with serial(small_mnist) as executor:
        low, low_state = run(BF16, executor, small_mnist)
        full, _ = run(fp32, executor, small_mnist)
    assert all(v.dtype == torch.float32 for v in low_state.values())
    assert low["final_state_sha256"] != full["final_state_sha256"]  # autocast really ran in bf16
    assert low["final_acc"] > 0.6 and abs(low["final_acc"] - full["final_acc"]) < 0.05, (
        low["final_acc"],
        full["final_acc"],
    )
    assert low["run_id"] != full["run_id"]


def test_pixels_in_0_to_1_train_evaluate_and_checkpoint_as_their_own_run(small_mnist):
    unit = dataclasses.replace(SMALL, pixels="unit", lr=0.2)
    with serial(small_mnist) as executor:
        got, state = run(unit, executor, small_mnist)
        standard, _ = run(dataclasses.replace(unit, pixels="standardized"), executor, small_mnist)
    assert got["config"]["pixels"] == "unit" and got["run_id"] != standard["run_id"]
    assert "pixels" not in SMALL.identity()  # the default keeps the ids of runs made before the field
    assert got["final_state_sha256"] != standard["final_state_sha256"]
    model = build_model("2nn")
    model.load_state_dict(state)
    scored = {
        pixels: compute.evaluate_inputs(
            model, compute.prepare_inputs(small_mnist.test_images, pixels=pixels), small_mnist.test_labels
        )["accuracy"]
        for pixels in ("unit", "standardized")
    }
    assert scored["unit"] == got["final_acc"] and scored["standardized"] != got["final_acc"], scored
    assert got["final_acc"] > 0.5, got["final_acc"]


def test_a_checkpoint_from_before_the_precision_fields_still_resumes(small_mnist, tmp_path):
    with serial(small_mnist) as executor:
        run(dataclasses.replace(SMALL, rounds=1), executor, small_mnist, checkpoint_dir=tmp_path)
        state, report = load_checkpoint(tmp_path)
        for key in ("precision", "channels_last", "pixels"):
            del report["config"][key]
        torch.save({"state": state, "report": json.dumps(report)}, tmp_path / "checkpoint.pt")
        resumed, _ = run(
            dataclasses.replace(SMALL, rounds=2), executor, small_mnist, checkpoint_dir=tmp_path, resume=True
        )
        with pytest.raises(CheckpointError, match="another configuration"):
            run(
                dataclasses.replace(SMALL, rounds=3, precision="bf16"),
                executor,
                small_mnist,
                checkpoint_dir=tmp_path,
                resume=True,
            )
    assert resumed["resumed_after_round"] == 1 and len(resumed["rounds"]) == 2


def _flip(path: Path, offset: int, bit: int = 7) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 1 << bit
    path.write_bytes(bytes(blob))


def test_a_damaged_newest_checkpoint_is_refused_by_name_and_the_run_resumes_from_the_one_before(small_mnist, tmp_path):
    # Prepare: the uninterrupted run, and the same run checkpointed for 3 rounds with its newest checkpoint damaged
    config = dataclasses.replace(SMALL, rounds=4)
    with serial(small_mnist) as executor:
        whole, _ = run(config, executor, small_mnist)
        run(dataclasses.replace(config, rounds=3), executor, small_mnist, checkpoint_dir=tmp_path)
        newest = tmp_path / "checkpoint.pt"
        _flip(newest, newest.stat().st_size // 2)  # inside the weights, where torch.load finds nothing wrong
        # Execute
        said = []
        resumed, _ = run(config, executor, small_mnist, checkpoint_dir=tmp_path, resume=True, log=said.append)
    # Assert: round 3 is run again from round 2's checkpoint, so the run ends as if nothing had happened
    assert resumed["resumed_after_round"] == 2
    assert resumed["final_state_sha256"] == whole["final_state_sha256"]
    assert len(said) == 1 and str(newest) in said[0] and "do not match its sha256" in said[0]
    assert resumed["checkpoints_refused"] == [said[0].split("; resumed")[0]]
    assert (tmp_path / "checkpoint.pt.damaged").is_file()


def test_truncated_and_flipped_checkpoints_fall_back_to_the_newest_whole_one_or_name_every_file(small_mnist, tmp_path):
    from fedavg.run import checkpoint_files, load_newest

    with serial(small_mnist) as executor:
        run(SMALL, executor, small_mnist, checkpoint_dir=tmp_path)
    newest, previous, oldest = checkpoint_files(tmp_path)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    _flip(previous, 10)  # in the header line
    found = load_newest(tmp_path)
    assert found.path == oldest and len(found.report["rounds"]) == 1
    assert [str(newest) in found.refused[0], str(previous) in found.refused[1]] == [True, True]
    _flip(oldest, oldest.stat().st_size - 1)
    with pytest.raises(CheckpointError, match="no whole checkpoint") as refused:
        load_checkpoint(tmp_path)
    assert all(str(path) in str(refused.value) for path in (newest, previous, oldest))


def test_any_flipped_bit_of_a_checkpoint_is_refused(small_mnist, tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fedavg.run import read_checkpoint

    with serial(small_mnist) as executor:
        run(dataclasses.replace(SMALL, rounds=1), executor, small_mnist, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    whole = path.read_bytes()
    assert whole.startswith(weights.MAGIC)
    read_checkpoint(path)

    @settings(max_examples=60, deadline=None, database=None)
    @given(offset=st.integers(0, len(whole) - 1), bit=st.integers(0, 7))
    def flipped(offset, bit):
        path.write_bytes(whole)
        _flip(path, offset, bit)
        with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
            read_checkpoint(path)

    flipped()


def test_a_checkpoints_report_json_reads_back_as_the_report_round_after_round():
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fedavg.run import ReportJSON

    values = st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
    records = st.lists(st.dictionaries(st.text(max_size=5), values | st.lists(values, max_size=3), max_size=4))

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(st.text(max_size=5).filter(lambda k: k != "rounds"), values, max_size=4), records, records)
    def check(rest, before, added):
        # Prepare
        report = {**rest, "rounds": list(before)}
        encoded = ReportJSON(before)
        for record in added:
            # Execute
            report["rounds"].append(record)
            encoded.append(record)
            text = encoded.meta_json(report)
            # Assert
            assert text == json.dumps({"report": {**rest, "rounds": report["rounds"]}})
            assert json.loads(text) == {"report": report}

    check()
