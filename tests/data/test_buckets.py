"""Length-bucketed training batches: every example once per epoch, less padding, replayable order."""

from __future__ import annotations

import random

import pytest
import torch

from blockprune.data.buckets import LengthBucketBatchSampler
from helpers.jobs import make_cfg

_RNG = random.Random(0)
LENGTHS = [_RNG.randint(3, 60) for _ in range(1000)]


def _padded_tokens(batches: list[list[int]]) -> int:
    return sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)


def test_every_example_once_per_epoch_and_len_matches():
    sampler = LengthBucketBatchSampler(
        LENGTHS, batch_size=32, generator=torch.Generator().manual_seed(0), pool_batches=5
    )
    for _ in range(2):  # two epochs, two different orders
        batches = list(sampler)
        assert len(batches) == len(sampler) == 32  # ceil(1000 / 32)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        assert all(len(b) <= 32 for b in batches)


def test_buckets_pad_far_less_than_random_batches():
    gen = torch.Generator().manual_seed(1)
    bucketed = list(LengthBucketBatchSampler(LENGTHS, batch_size=32, generator=gen, pool_batches=10))
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    plain = [perm[i : i + 32] for i in range(0, 1000, 32)]
    real = sum(LENGTHS)
    waste_bucketed = _padded_tokens(bucketed) / real - 1
    waste_plain = _padded_tokens(plain) / real - 1
    assert waste_bucketed < 0.25 * waste_plain, (waste_bucketed, waste_plain)


def test_the_same_generator_state_replays_the_same_epoch():
    """What a resumed job relies on: ResumableTraining restores the loader generator's state."""
    gen = torch.Generator().manual_seed(3)
    sampler = LengthBucketBatchSampler(LENGTHS, batch_size=16, generator=gen)
    state = gen.get_state()
    first = list(sampler)
    gen.set_state(state)
    assert list(sampler) == first
    assert list(sampler) != first  # the next epoch differs


def test_a_job_trains_on_bucketed_batches(tmp_path):
    from blockprune.main import train

    cfg = make_cfg(tmp_path, ["data.bucket_by_length=true", "trainer.max_epochs=1", "bench.enabled=false"])
    results = train(cfg)
    assert results["status"] == "completed"
    assert results["metrics"]["test/acc"] == pytest.approx(
        sum(p == t for p, t in zip(results["predictions"]["pred"], results["predictions"]["target"]))
        / len(results["predictions"]["target"])
    )


def test_bucketing_is_refused_under_ddp(tmp_path):
    from blockprune.errors import ConfigError
    from blockprune.validation import check_config

    with pytest.raises(ConfigError, match="bucket_by_length"):
        check_config(make_cfg(tmp_path, ["data.bucket_by_length=true", "trainer=ddp"]))
