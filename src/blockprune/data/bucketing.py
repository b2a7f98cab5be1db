"""Length-bucketed training batches: less padding, cheaper CPU epochs.

The data module pads each batch to its longest text, and attention and the linears compute on
the padded positions too. On MahaSent-ST (e5 tokenizer, batches of 32) 61 % of the positions of
random batches are padding; sorting texts by length inside chunks of ``bucket_batches`` batches
and shuffling the batches leaves 3 % (docs/results/ablation_mahasent/padding_waste.json), so an
epoch computes on 59 % fewer positions. Batches still mix texts from anywhere in the chunk, and
their order is random, so training sees no length curriculum.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices (a ``batch_sampler``): each epoch a seeded permutation is
    cut into chunks of ``bucket_batches * batch_size`` examples, each chunk is sorted by length
    and cut into batches, and all batches are shuffled. Every example appears once per epoch;
    ``set_epoch`` (called by Lightning) changes the order from epoch to epoch."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, bucket_batches: int = 100, drop_last: bool = False
    ) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError(f"batch_size={batch_size} and bucket_batches={bucket_batches} must be >= 1")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_batches
        out: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            out += [part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)]
        if self.drop_last:
            out = [b for b in out if len(b) == self.batch_size]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        chunk = self.batch_size * self.bucket_batches
        full, rest = divmod(n, chunk)
        per_chunk = [self.batch_size * self.bucket_batches] * full + ([rest] if rest else [])
        if self.drop_last:
            return sum(c // self.batch_size for c in per_chunk)
        return sum(-(-c // self.batch_size) for c in per_chunk)
