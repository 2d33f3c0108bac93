"""Job settings, the key layout, updates and checkpoints as blobs, and the choice of K: pure functions, no storage."""

from __future__ import annotations

import pytest
import torch

from mlcore import weights
from mlcore.errors import DamagedError
from mlcore.training.exchange import decode, encode
from mlcore.training.job import JobConfig, JobLayout, TrainingError
from mlcore.training.topology import next_local_steps


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"workers": 0}, "workers must be >= 1"),
        ({"workers": 4, "batch_size": 2}, "must be at least the number of workers"),
        ({"mode": "async"}, "mode must be one of"),
        ({"topology": "ring"}, "topology must be one of"),
        ({"topology": "ps", "workers": 3, "batch_size": 48, "quorum": 2}, "quorum applies to topology allreduce only"),
        ({"mode": "sync", "local_steps": 4}, "local steps apply to mode local only"),
        ({"comm_target": 1.5}, "comm_target must be between 0 and 1"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"quorum": 5}, "quorum must be between 1 and workers"),
        ({"compress": "zip"}, "compress must be one of"),
        ({"lr": "fast"}, "setting lr='fast' is not a float"),
        ({"nope": 1}, "unknown job settings ['nope']"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(settings, message):
    with pytest.raises(TrainingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        JobConfig.from_dict({"job": "j", **settings})


def test_settings_survive_the_trip_through_json_with_string_values():
    config = JobConfig.from_dict({"job": "j", "workers": "4", "nesterov": "false", "lr": "0.05"})
    assert config.workers == 4 and config.nesterov is False and config.lr == 0.05
    assert JobConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize(
    "spelled, meant",
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("False", False),
        (" TRUE ", True),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_a_boolean_setting_reads_each_spelling_of_true_and_false(spelled, meant):
    assert JobConfig.from_dict({"job": "j", "nesterov": spelled}).nesterov is meant


@pytest.mark.parametrize("spelled", ["yes", "no", "maybe", "", 2, -1, 0.5, None])
def test_a_boolean_setting_refuses_anything_else_naming_the_spellings(spelled):
    with pytest.raises(TrainingError, match=r"setting eval_live=.* is not a bool \(true, false, 1 or 0\)"):
        JobConfig.from_dict({"job": "j", "eval_live": spelled})


def test_the_schedule_warms_up_then_decays_to_zero():
    config = JobConfig(job="j", workers=2, epochs=2, batch_size=64, train_limit=6400, lr=0.1, warmup_epochs=0.5)
    per_epoch = config.batches_per_epoch(6400)
    lrs = [config.lr_at(i, 6400) for i in range(config.total_batches(6400) + 1)]
    peak = lrs.index(max(lrs))
    assert per_epoch == 100 and peak == 49 and lrs[peak] == pytest.approx(0.1)
    assert lrs[:peak] == sorted(lrs[:peak]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_round_numbers_sort_and_read_back_from_every_kind_of_key():
    layout = JobLayout("j")
    assert layout.update(12, 3) == "jobs/j/updates/000000012/3"
    assert [layout.round_of(k) for k in (layout.update(12, 3), layout.decision(7), layout.checkpoint(40))] == [
        12,
        7,
        40,
    ]
    assert sorted([layout.checkpoint(10), layout.checkpoint(9)]) == [layout.checkpoint(9), layout.checkpoint(10)]


def test_an_update_keeps_its_header_and_fp16_halves_it():
    vector = torch.randn(1000)
    full, half = encode(vector, {"round": 3}), encode(vector, {"round": 3}, "fp16")
    header, back = decode(full)
    assert header["round"] == 3 and torch.equal(back, vector)
    _, approx = decode(half)
    assert len(half) < 0.6 * len(full) and torch.allclose(approx, vector, atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize(
    "blob, why",
    [
        (b"", "not in the weights format"),
        (b"garbage bytes here", "not in the weights format"),
        (b"OWT1\x05\x00\x00\x00{bad}", "not in the weights format"),
        (weights.encode({"params": torch.zeros(3)}, {"round": 1}), "holds no update"),
    ],
)
def test_bytes_that_are_not_an_update_are_refused_by_key(blob, why):
    with pytest.raises(DamagedError, match=f"jobs/j/updates/000000001/0 is damaged: .*{why}"):
        decode(blob, "jobs/j/updates/000000001/0")


def test_k_grows_until_communication_is_near_the_target_and_is_bounded():
    config = JobConfig(job="j", mode="local", local_steps=0, comm_target=0.2, max_local_steps=64)
    # 40 ms of communication per round, 5 ms per local step: 0.2 needs K = 40*0.8/0.2/5 = 32
    headers = [{"comm_s": 0.04, "compute_s": 0.005 * 4, "k": 4}, {"comm_s": 0.03, "compute_s": 0.006 * 4, "k": 4}]
    k, seen = 4, []
    for _ in range(8):
        k = next_local_steps(config, [{**h, "k": k, "compute_s": h["compute_s"] / 4 * k} for h in headers], k)
        seen.append(k)
    assert seen == sorted(seen) and 26 <= seen[-1] <= 30  # halfway steps towards 40*0.8/0.2/5.5 = 29.1
    slow = [{"comm_s": 10.0, "compute_s": 0.001, "k": 1}]
    assert next_local_steps(config, slow, 60) == 64
    assert next_local_steps(JobConfig(job="j", mode="local", local_steps=8), headers, 4) == 8
    assert next_local_steps(JobConfig(job="j", mode="sync"), headers, 4) == 1
    assert next_local_steps(config, [{"comm_s": None, "compute_s": 0.02, "k": 4}], 4) == 4


def test_any_flipped_bit_of_a_checkpoint_is_refused_naming_its_key():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mlcore.training.state import split_state, state_blob

    blob = state_blob(torch.randn(300), torch.randn(300), {"round": 4, "batch": 8, "k": 1})
    assert split_state(blob, "jobs/j/checkpoints/000000004")[0]["round"] == 4

    @settings(max_examples=200, deadline=None, database=None)
    @given(offset=st.integers(0, len(blob) - 1), bit=st.integers(0, 7), cut=st.booleans())
    def damaged(offset, bit, cut):
        broken = blob[:offset] if cut else blob[:offset] + bytes([blob[offset] ^ 1 << bit]) + blob[offset + 1 :]
        with pytest.raises(DamagedError, match="jobs/j/checkpoints/000000004 is damaged"):
            split_state(broken, "jobs/j/checkpoints/000000004")

    damaged()
