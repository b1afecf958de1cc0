"""Device-resident replay buffer: sampling with a generator, extra columns, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dvdf.data import TransitionBuffer


def transitions(n=100):
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(n, 4)).astype(np.float64),  # cast to float32 on load
            "actions": rng.normal(size=(n, 2)).astype(np.float32),
            "rewards": np.arange(n, dtype=np.float32),
            "next_observations": rng.normal(size=(n, 4)).astype(np.float32),
            "dones": np.zeros(n, np.float32),
            "provenance": np.arange(n) % 3}


def test_sample_is_reproducible_and_aligned():
    buffer = TransitionBuffer.from_transitions(transitions())
    assert len(buffer) == 100 and buffer["observations"].dtype == torch.float32
    assert buffer["provenance"].dtype == torch.int64
    a = buffer.sample(64, torch.Generator().manual_seed(1))
    b = buffer.sample(64, torch.Generator().manual_seed(1))
    c = buffer.sample(64, torch.Generator().manual_seed(2))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(a["rewards"], c["rewards"])
    # rewards == row index, so every column must come from the same rows.
    rows = a["rewards"].long()
    torch.testing.assert_close(a["observations"], buffer["observations"][rows])
    torch.testing.assert_close(a["provenance"], buffer["provenance"][rows])


def test_sampling_covers_rows_uniformly():
    buffer = TransitionBuffer.from_transitions(transitions(10))
    counts = torch.bincount(buffer.sample_indices(100_000, torch.Generator().manual_seed(0)), minlength=10)
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_add_column_and_subset():
    buffer = TransitionBuffer.from_transitions(transitions())
    buffer.add_column("score", np.linspace(0, 1, 100))
    assert "score" in buffer and buffer["score"].device == buffer.device
    batch = buffer.sample(8, torch.Generator().manual_seed(0), names=("rewards", "score"))
    assert set(batch) == {"rewards", "score"}
    torch.testing.assert_close(batch["score"], buffer["score"][batch["rewards"].long()])
    with pytest.raises(ValueError, match="rows"):
        buffer.add_column("bad", torch.zeros(99))


def test_to_device():
    buffer = TransitionBuffer.from_transitions(transitions())
    assert buffer.to("cpu") is buffer
    if torch.cuda.is_available():
        moved = buffer.to("cuda")
        gen = torch.Generator(device="cuda").manual_seed(0)
        assert moved.sample(4, gen)["observations"].is_cuda


def test_member_batches_are_the_single_batches_of_their_generators():
    buffer = TransitionBuffer.from_transitions(transitions())
    scores = torch.arange(300, dtype=torch.float32).view(3, 100)   # member k, row i -> 100 k + i
    buffer.add_member_column("dyn_score", scores)
    assert buffer.members == 3
    batch = buffer.sample_members(16, [torch.Generator().manual_seed(s) for s in (4, 5, 6)])
    assert batch["observations"].shape == (3, 16, 4) and batch["dyn_score"].shape == (3, 16)
    for k, seed in enumerate((4, 5, 6)):
        single = buffer.sample(16, torch.Generator().manual_seed(seed))
        for key, value in single.items():
            assert torch.equal(batch[key][k], value), key
        rows = single["rewards"].long()
        assert torch.equal(batch["dyn_score"][k], 100 * k + rows.float())
    with pytest.raises(ValueError, match="members"):
        buffer.add_member_column("advantage", torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"\(members, 100\)"):
        buffer.add_member_column("advantage", torch.zeros(3, 99))
    with pytest.raises(ValueError, match="2 generators"):
        buffer.sample_members(4, [torch.Generator(), torch.Generator()])
