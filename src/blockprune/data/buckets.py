"""Length-bucketed training batches: shuffled, but each batch drawn from texts of similar length.

Why: a batch is padded to its longest text, and with random batches most of what a CPU computes is
padding (MahaSent-ST: 61 % of the tokens of random batches of 32 are padding, 3 % with buckets;
docs/results/ablation_mahasent/padding_waste.json). The order comes from the loader's generator, so a
resumed job replays an epoch exactly as with plain shuffling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """ "Sortish" batches: shuffle all indices, sort each pool of ``pool_batches`` batches by length,
    cut it into batches, then shuffle the batches, so the model still sees every length mixed over an epoch."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, pool_batches: int = 50
    ) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size={batch_size} and pool_batches={pool_batches} must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.pool = batch_size * pool_batches

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)  # pools are whole batches: same count as shuffling

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=self.lengths.__getitem__)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
