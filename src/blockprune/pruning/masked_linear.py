"""``BlockMaskedLinear``: an ``nn.Linear`` whose weight is multiplied by a learned block mask."""

from __future__ import annotations

import torch
from torch import nn

from blockprune.pruning.binarizers import TopKBinarizer


class BlockMaskedLinear(nn.Linear):
    """Drop-in ``nn.Linear`` with one learned score per (rows x cols) block of the weight.

    ``scores`` may be shared with another layer (``scores_axis`` names how they map onto this
    weight): the feed-forward pair uses one score per intermediate neuron, i.e. rows of the
    first layer and columns of the second. The mask depends only on the scores and the
    current ``sparsity`` buffer, so training and evaluation see the same mask.

    ``tile_rows`` repeats the score grid that many times down the rows: a fused QKV weight
    ([Q; K; V]) in head mode, or a gated FFN input ([input; gate]), has one score per head or
    neuron shared by its row blocks in each part.
    """

    def __init__(
        self,
        linear: nn.Linear,
        block_shape: tuple[int, int],
        binarizer: object | None = None,
        mask_scores: nn.Parameter | None = None,
        tile_rows: int = 1,
    ) -> None:
        out_features, in_features = linear.weight.shape
        rows, cols = block_shape
        if out_features % rows or in_features % cols:
            raise ValueError(f"block shape {rows}x{cols} does not divide a {out_features}x{in_features} weight")
        super().__init__(in_features, out_features, bias=linear.bias is not None, device="meta")
        self.weight = linear.weight
        self.bias = linear.bias
        self.block_shape = (rows, cols)
        self.binarizer = binarizer or TopKBinarizer()
        grid = (out_features // rows, in_features // cols)
        if grid[0] % tile_rows:
            raise ValueError(f"{grid[0]} row blocks cannot be split into {tile_rows} equal parts")
        self.tile_rows = tile_rows
        grid = (grid[0] // tile_rows, grid[1])  # the score grid; the mask repeats it tile_rows times
        if mask_scores is None:
            mask_scores = nn.Parameter(torch.zeros(grid, device=linear.weight.device))
        if mask_scores.numel() != grid[0] * grid[1]:
            raise ValueError(f"shared scores have {mask_scores.numel()} entries, the block grid needs {grid}")
        self.mask_scores = mask_scores
        self.grid = grid
        # The sparsity lives in a buffer (saved in checkpoints) and, to avoid a device sync in
        # every forward pass, in a Python float kept equal to it.
        self.register_buffer("sparsity", torch.zeros((), device=linear.weight.device))
        self.register_buffer("reg_lambda", torch.zeros((), device=linear.weight.device))
        self._sparsity = 0.0

    def set_sparsity(self, sparsity: float) -> None:
        self._sparsity = float(sparsity)
        self.sparsity.fill_(sparsity)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._sparsity = float(self.sparsity)

    def block_mask(self) -> torch.Tensor:
        """0/1 mask with one entry per block (differentiable w.r.t. scores by straight-through)."""
        mask = self.binarizer(self.mask_scores.view(self.grid), self._sparsity).view(self.grid)
        return mask.repeat(self.tile_rows, 1) if self.tile_rows > 1 else mask

    def weight_mask(self) -> torch.Tensor:
        rows, cols = self.block_shape
        return self.block_mask().repeat_interleave(rows, 0).repeat_interleave(cols, 1)

    def masked_weight(self) -> torch.Tensor:
        """Weight times mask, broadcasting the block mask over each block (no full-size mask)."""
        (grid_rows, grid_cols), (rows, cols) = self.grid, self.block_shape
        grid_rows *= self.tile_rows
        blocks = self.weight.view(grid_rows, rows, grid_cols, cols)
        mask = self.block_mask().to(self.weight.dtype).view(grid_rows, 1, grid_cols, 1)
        return (blocks * mask).view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.masked_weight(), self.bias)

    def regularization_loss(self) -> torch.Tensor:
        """The binarizer's penalty (L1 on sigmoid scores for soft movement), scaled by the schedule."""
        return self.reg_lambda * self.binarizer.regularization(self.mask_scores)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the mask baked into the weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.masked_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.to(self.weight.device, self.weight.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block_shape={self.block_shape}, binarizer={self.binarizer.name}"
