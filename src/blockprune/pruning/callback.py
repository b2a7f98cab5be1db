"""``BlockPruning``: the Lightning callback that patches the encoder and runs the sparsity schedule."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn

from blockprune.errors import ConfigError
from blockprune.pruning.allocation import ALLOCATIONS, GLOBAL_ALLOCATIONS, install_global_allocation
from blockprune.pruning.binarizers import BINARIZERS, SigmoidThresholdBinarizer, TopKBinarizer
from blockprune.pruning.masked_linear import BlockMaskedLinear
from blockprune.pruning.patch import find_encoder_layers, masked_layers, patch_encoder
from blockprune.pruning.schedule import CubicSchedule

log = logging.getLogger(__name__)


class BlockPruning(L.Callback):
    """Block movement pruning (Lagunas et al. 2021) of a BERT-family encoder.

    ``patch`` swaps in ``BlockMaskedLinear`` layers (before the optimiser is built, so the
    scores get their own parameter group); during training the cubic schedule sets the
    sparsity (top-k) or the L1 strength (sigmoid threshold) at every step from the global
    step, so a resumed run continues exactly where it stopped.
    """

    def __init__(
        self,
        sparsity: float,
        method: str = "topk",
        attention_block: Sequence[int] | str = (32, 32),
        scores_lr: float = 1e-2,
        warmup: float = 0.1,
        hold: float = 0.2,
        threshold: float = 0.1,
        reg_lambda: float = 0.0,
        fill_epochs: int = 0,
        allocation: str = "uniform",
        min_keep: float = 0.05,
    ) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(
                f"prune.sparsity={sparsity} is outside [0, 1): give the fraction of weights to remove, e.g. 0.5."
            )
        if method not in BINARIZERS:
            raise ConfigError(f"prune.method={method!r} is unknown; allowed: {sorted(BINARIZERS)}.")
        if attention_block == "head":
            block = None
        elif isinstance(attention_block, str) or len(attention_block) != 2 or min(attention_block) < 1:
            raise ConfigError(
                f"prune.attention_block={attention_block!r} must be two positive sizes [rows, cols] or 'head' "
                "(one score per attention head, shared by Q/K/V/O)."
            )
        else:
            block = (int(attention_block[0]), int(attention_block[1]))
        if not (0 <= warmup < 1 and 0 <= hold < 1 and warmup + hold < 1):
            raise ConfigError(
                f"prune.warmup={warmup} and prune.hold={hold} must be fractions in [0, 1) with a sum below 1."
            )
        if method == "sigmoid_threshold" and reg_lambda <= 0:
            raise ConfigError(
                "prune.method=sigmoid_threshold needs prune.reg_lambda > 0: sparsity comes from the L1 penalty."
            )
        if allocation not in ALLOCATIONS:
            raise ConfigError(f"prune.allocation={allocation!r} is unknown; allowed: {list(ALLOCATIONS)}.")
        if allocation in GLOBAL_ALLOCATIONS and method != "topk":
            raise ConfigError(f"prune.allocation={allocation} ranks blocks for top-k; it needs prune.method=topk.")
        if allocation in GLOBAL_ALLOCATIONS and not 0.0 <= min_keep <= 1.0 - sparsity:
            raise ConfigError(
                f"prune.min_keep={min_keep} must be in [0, 1 - prune.sparsity = {1 - sparsity:g}]: every matrix "
                "keeps at least that share of its blocks, which must fit in what the sparsity keeps."
            )
        self.sparsity = sparsity
        self.method = method
        self.allocation = allocation
        self.min_keep = min_keep
        self.attention_block = block
        self.scores_lr = scores_lr
        self.warmup, self.hold = warmup, hold
        self.threshold = threshold
        self.reg_lambda = reg_lambda
        self.fill_epochs = fill_epochs
        self.schedule: CubicSchedule | None = None

    def _binarizer(self) -> TopKBinarizer | SigmoidThresholdBinarizer:
        return TopKBinarizer() if self.method == "topk" else SigmoidThresholdBinarizer(self.threshold)

    def patch(self, model: nn.Module) -> list[BlockMaskedLinear]:
        """Mask the encoder (idempotent). Raises ConfigError when the block shape does not fit."""
        try:
            layers = patch_encoder(model, self.attention_block, self._binarizer)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if self.allocation in GLOBAL_ALLOCATIONS:
            install_global_allocation(model, self.min_keep, standardize=self.allocation == "global_standardized")
        return layers

    # --- schedule -------------------------------------------------------------------------
    def set_step(self, model: nn.Module, step: int) -> None:
        """Set every masked layer's sparsity (top-k) and penalty strength for this step."""
        assert self.schedule is not None
        sparsity = self.schedule.sparsity(step) if self.method == "topk" else 0.0
        reg = self.reg_lambda * self.schedule.progress(step)
        for layer in masked_layers(model):
            layer.set_sparsity(sparsity)
            layer.reg_lambda.fill_(reg)

    def in_pruning_phase(self, step: int) -> bool:
        """True until the schedule reaches its final hold: checkpoints before that are not comparable."""
        return self.schedule is not None and step < self.schedule.hold_start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.schedule = CubicSchedule(self.sparsity, int(trainer.estimated_stepping_batches), self.warmup, self.hold)
        self.set_step(pl_module.model, trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.set_step(pl_module.model, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.set_step(pl_module.model, self.schedule.total_steps)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            pl_module.log_dict({f"prune/{k}": float(v) for k, v in sparsity_stats(pl_module.model).items()})


def _mask(linear: nn.Linear) -> torch.Tensor:
    return linear.weight_mask() if isinstance(linear, BlockMaskedLinear) else torch.ones_like(linear.weight)


@torch.no_grad()
def sparsity_stats(model: nn.Module) -> dict[str, float]:
    """Fraction of masked weights per layer type, heads and FFN neurons still alive (what
    compaction will keep: a head needs live value rows and live output columns)."""
    removed = {"attention": 0.0, "ffn": 0.0}
    size = {"attention": 0, "ffn": 0}
    heads_alive = ffn_alive = 0
    for layer in find_encoder_layers(model):
        masks = {role: _mask(layer.linear(role)) for role in layer.roles}  # roles: see blockprune.encoder
        ffn_masks = (masks.pop("ffn_in"), masks.pop("ffn_out"))
        for kind, group in (("attention", masks.values()), ("ffn", ffn_masks)):
            for mask in group:
                removed[kind] += float((mask == 0).sum())
                size[kind] += mask.numel()
        v_alive = (layer.value_rows(masks["qkv" if "qkv" in masks else "v"]) != 0).flatten(1).any(1)
        o_alive = (layer.output_cols(masks["o"]) != 0).flatten(1).any(1)
        heads_alive += int((v_alive & o_alive).sum())
        ffn_alive += int(((layer.ffn_rows(ffn_masks[0]) != 0).flatten(1).any(1) & (ffn_masks[1] != 0).any(0)).sum())
    return {
        "sparsity_attention": removed["attention"] / size["attention"],
        "sparsity_ffn": removed["ffn"] / size["ffn"],
        "sparsity_encoder_linear": sum(removed.values()) / sum(size.values()),
        "heads_alive": heads_alive,
        "ffn_neurons_alive": ffn_alive,
    }
