"""Length-bucketed batches: every example once per epoch, far less padding, a seeded order."""

from __future__ import annotations

import numpy as np
import pytest

from blockprune.data.bucketing import LengthBucketBatchSampler


def _padded(lengths, batches):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_example_once_and_len_matches(drop_last):
    lengths = np.random.default_rng(0).integers(3, 60, size=1003)
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, bucket_batches=4, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = sorted(i for b in batches for i in b)
    if drop_last:
        assert all(len(b) == 32 for b in batches) and len(set(seen)) == len(seen)
    else:
        assert seen == list(range(1003))


def test_less_padding_than_random_batches_and_a_new_order_each_epoch():
    lengths = np.random.default_rng(1).integers(3, 60, size=3200)
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, seed=5)
    random_batches = np.random.default_rng(2).permutation(3200).reshape(-1, 32).tolist()
    assert _padded(lengths, list(sampler)) < 0.75 * _padded(lengths, random_batches)
    first = list(sampler)
    assert first == list(sampler)  # same epoch, same order (a resumed epoch replays it)
    sampler.set_epoch(1)
    assert first != list(sampler)
    # within a batch the lengths are close: the spread of a batch is far below the data's
    assert np.mean([np.ptp(lengths[b]) for b in first]) < 0.2 * np.ptp(lengths)
