"""Binarizers turn learned scores into 0/1 masks; gradients pass straight through (Bengio et al. 2013).

Movement pruning (Sanh et al. 2020; blocks: Lagunas et al. 2021) learns scores from the weight
movement: with mask M = binarize(S) and W' = W * M, the straight-through estimator uses
dL/dS = dL/dM, so a score grows when its block's weights move away from zero.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class _TopKFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep: int) -> torch.Tensor:  # type: ignore[override]
        mask = torch.zeros_like(scores)
        if keep > 0:
            idx = torch.topk(scores.flatten(), keep, sorted=False).indices
            mask.view(-1)[idx] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _ThresholdFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, probs: torch.Tensor, threshold: float) -> torch.Tensor:  # type: ignore[override]
        return (probs > threshold).to(probs.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


def kept_blocks(num_blocks: int, sparsity: float) -> int:
    """Blocks a top-k mask keeps at ``sparsity``: rounded to the nearest block, so the
    reached sparsity is exact up to half a block per matrix."""
    return int(math.floor(num_blocks * (1.0 - sparsity) + 0.5))


class TopKBinarizer:
    """Keeps exactly the top (1 - sparsity) fraction of blocks of one matrix by score, or, with
    an ``allocation`` (``prune.allocation=global``), the count that a ranking across all layers
    gives this matrix (``blockprune.pruning.allocation``)."""

    name = "topk"

    def __init__(self, allocation: Any = None) -> None:
        self.allocation = allocation

    def __call__(self, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        if self.allocation is not None:
            return _TopKFunction.apply(scores, self.allocation.keep(scores, sparsity))
        return _TopKFunction.apply(scores, kept_blocks(scores.numel(), sparsity))

    def regularization(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.new_zeros(())


class SigmoidThresholdBinarizer:
    """Keeps blocks with sigmoid(score) > threshold; an L1 penalty on sigmoid(scores) makes
    sparsity emerge (soft movement pruning), so ``sparsity`` is not used to pick blocks."""

    name = "sigmoid_threshold"

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold

    def __call__(self, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        return _ThresholdFunction.apply(torch.sigmoid(scores), self.threshold)

    def regularization(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(scores).mean()


BINARIZERS = {"topk": TopKBinarizer, "sigmoid_threshold": SigmoidThresholdBinarizer}
