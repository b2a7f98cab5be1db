"""Global allocation: one ranking of blocks across all layers instead of one sparsity per matrix.

Uniform top-k removes the same fraction from every matrix, although layers matter unequally
(Michel et al. 2019: most heads of most layers can go, a few layers need theirs; CoFi and
global movement pruning rank across layers). Here the attention blocks (heads with
``prune.attention_block=head``) form one ranking and the feed-forward neurons another; every
score tensor keeps at least ``min_keep`` of its blocks (so no layer is emptied by accident),
and the total kept is exactly what the uniform rule would keep over the whole group.

``global_standardized`` ranks each tensor's scores after standardising them (mean 0, std 1 per
tensor): raw movement scores grow with a layer's gradients, and one raw ranking gave the last
layer 1,353 of its 1,536 FFN neurons at 50 % (docs/accuracy.md); standardised, a layer wins
blocks by how it ranks them, not by the scale of its scores. Within a tensor the order, and
so which blocks are kept, is the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from blockprune.encoder import find_encoder_layers
from blockprune.errors import ConfigError
from blockprune.pruning.binarizers import TopKBinarizer, kept_blocks

ALLOCATIONS = ("uniform", "global", "global_standardized")
#: The allocations that rank across layers.
GLOBAL_ALLOCATIONS = ("global", "global_standardized")


def allocate(scores: Sequence[torch.Tensor], keep: int, minimum: Sequence[int], standardize: bool = False) -> list[int]:
    """Blocks each score tensor keeps: its ``minimum[i]`` best blocks first, then the rest of
    ``keep`` by one ranking of all remaining blocks (of the standardised scores with
    ``standardize``). The counts add up to ``keep`` exactly."""
    sizes = [s.numel() for s in scores]
    if any(not 0 <= m <= n for m, n in zip(minimum, sizes)) or not sum(minimum) <= keep <= sum(sizes):
        raise ValueError(
            f"cannot keep {keep} of {sum(sizes)} blocks with per-tensor minimum {list(minimum)} of {sizes}"
        )
    counts = list(minimum)
    remaining = keep - sum(minimum)
    if remaining:
        rest, owner = [], []
        for i, (s, m) in enumerate(zip(scores, minimum)):
            values = s.detach().flatten().float()
            if standardize:
                values = standardized(values)
            ranked = torch.sort(values, descending=True).values[m:]
            rest.append(ranked)
            owner.append(torch.full((ranked.numel(),), i, dtype=torch.long, device=ranked.device))
        chosen = torch.topk(torch.cat(rest), remaining).indices
        extra = torch.bincount(torch.cat(owner)[chosen], minlength=len(scores)).tolist()
        counts = [c + e for c, e in zip(counts, extra)]
    return counts


def standardized(values: torch.Tensor) -> torch.Tensor:
    """``values`` with mean 0 and standard deviation 1 (all equal: all 0)."""
    centred = values - values.mean()
    std = centred.pow(2).mean().sqrt()
    return centred / std if std > 0 else centred


def minimum_blocks(size: int, min_keep: float, sparsity: float) -> int:
    """A tensor's guaranteed blocks: ``min_keep`` of them (rounded up), but never more than the
    uniform rule keeps at this sparsity (so the minima always fit in the total)."""
    return min(math.ceil(min_keep * size - 1e-9), math.floor(size * (1.0 - sparsity) + 1e-9))  # 1e-9: float noise


class GlobalAllocation:
    """The per-tensor counts of one group of score tensors, recomputed whenever a score or the
    sparsity changed (optimiser steps and checkpoint loads bump the tensors' versions), so the
    masks of a loaded checkpoint follow from its scores alone, as with uniform top-k."""

    def __init__(self, scores: Sequence[torch.Tensor], min_keep: float, standardize: bool = False) -> None:
        unique: dict[int, torch.Tensor] = {}
        for s in scores:  # shared scores (Q/K/V/O of a head, the FFN pair) count once
            unique.setdefault(s.data_ptr(), s)
        self.scores = list(unique.values())
        self.min_keep = min_keep
        self.standardize = standardize
        self._key: tuple | None = None
        self._counts: dict[int, int] = {}

    def counts(self, sparsity: float) -> list[int]:
        sizes = [s.numel() for s in self.scores]
        minimum = [minimum_blocks(n, self.min_keep, sparsity) for n in sizes]
        return allocate(self.scores, kept_blocks(sum(sizes), sparsity), minimum, self.standardize)

    def keep(self, scores: torch.Tensor, sparsity: float) -> int:
        key = (sparsity, tuple((s.data_ptr(), s._version) for s in self.scores))
        if key != self._key:
            self._counts = dict(zip((s.data_ptr() for s in self.scores), self.counts(sparsity)))
            self._key = key
        return self._counts[scores.data_ptr()]


def install_global_allocation(
    model: nn.Module, min_keep: float, standardize: bool = False
) -> dict[str, GlobalAllocation]:
    """Give every masked linear a top-k binarizer that takes its count from its group's ranking:
    "attention" (Q/K/V/O blocks or heads of all layers) and "ffn" (neurons of all layers)."""
    if not 0.0 <= min_keep < 1.0:
        raise ConfigError(
            f"prune.min_keep={min_keep} must be a fraction in [0, 1): the share of each matrix always kept."
        )
    groups: dict[str, list[nn.Module]] = {"attention": [], "ffn": []}
    for layer in find_encoder_layers(model):
        for role in layer.roles:
            linear = layer.linear(role)
            if hasattr(linear, "mask_scores"):
                groups["ffn" if role.startswith("ffn") else "attention"].append(linear)
    allocations = {}
    for name, linears in groups.items():
        if not linears:
            continue
        allocation = GlobalAllocation([lin.mask_scores for lin in linears], min_keep, standardize)
        for lin in linears:
            lin.binarizer = TopKBinarizer(allocation)
        allocations[name] = allocation
    return allocations
