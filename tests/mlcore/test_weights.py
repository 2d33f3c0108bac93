"""One format of weights on storage: what goes in comes out, and no damaged copy is ever read as whole."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore import weights
from mlcore.errors import DamagedError, MLCoreError
from mlcore.model import LeNet5

WHERE = "s3://b/models/lenet5/v1"


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in LeNet5().state_dict().items()}


def test_tensors_of_every_stored_dtype_and_the_meta_come_back_exactly():
    # Prepare
    tensors = {
        "conv": torch.randn(6, 1, 5, 5).contiguous(memory_format=torch.channels_last),
        "half": torch.randn(7).half(),
        "double": torch.randn(2, 3).double(),
        "images": torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8),
        "labels": torch.arange(3),
        "ints": torch.arange(4, dtype=torch.int32),
        "mask": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    # Execute
    back, meta = weights.decode(weights.encode(tensors, {"round": 3, "report": {"rounds": [1.5]}}), WHERE)
    # Assert
    assert meta == {"round": 3, "report": {"rounds": [1.5]}} and list(back) == list(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name], tensor), name


def test_a_dtype_the_format_has_no_place_for_is_refused_by_name():
    with pytest.raises(MLCoreError, match="tensor 'w' is torch.bfloat16; weights store only float32"):
        weights.encode({"w": torch.zeros(2, dtype=torch.bfloat16)})


def test_any_flipped_bit_or_cut_is_refused_naming_where():
    blob = weights.encode({"w": torch.randn(20), "n": torch.arange(3)}, {"round": 1})

    @settings(max_examples=300, deadline=None, database=None)
    @given(offset=st.integers(0, len(blob) - 1), bit=st.integers(0, 7), cut=st.booleans())
    def damaged(offset, bit, cut):
        broken = blob[:offset] if cut else blob[:offset] + bytes([blob[offset] ^ 1 << bit]) + blob[offset + 1 :]
        with pytest.raises(DamagedError, match=f"^{WHERE} is damaged: "):
            weights.decode(broken, WHERE)

    damaged()


def test_a_header_that_does_not_describe_the_bytes_is_refused_even_with_a_good_digest():
    blob = weights.encode({"w": torch.zeros(4)})
    body = blob[: -weights.DIGEST_BYTES].replace(b"[4]", b"[5]")
    with pytest.raises(DamagedError, match="its header does not describe its bytes"):
        weights.decode(body + hashlib.sha256(body).digest(), WHERE)


def test_a_bare_torch_save_from_before_the_format_is_still_read():
    state = _state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    back, meta = weights.decode(buffer.getvalue(), WHERE)
    assert meta == {} and all(torch.equal(back[k], state[k]) for k in state)


def test_a_torch_save_behind_a_digest_line_is_read_checked_against_it():
    buffer = io.BytesIO()
    torch.save({"state": _state(), "report": "{}"}, buffer)
    payload = buffer.getvalue()
    head = f"fedavg-checkpoint sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()
    assert set(weights.decode(head + payload, WHERE)[0]) == {"state", "report"}
    flipped = bytearray(head + payload)
    flipped[len(head) + len(payload) // 2] ^= 1
    with pytest.raises(DamagedError, match="its bytes do not match its sha256"):
        weights.decode(bytes(flipped), WHERE)
    with pytest.raises(DamagedError, match="bytes are there"):
        weights.decode(head + payload[:-3], WHERE)


def test_a_torch_save_of_something_else_than_named_tensors_is_refused():
    buffer = io.BytesIO()
    torch.save([torch.zeros(2)], buffer)
    with pytest.raises(DamagedError, match="holds a list, not named tensors"):
        weights.decode(buffer.getvalue(), WHERE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(meta=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_meta_given_as_its_json_gives_the_same_bytes(meta):
    import json

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert weights.encode(tensors, meta_json=json.dumps(meta)) == weights.encode(tensors, meta)
