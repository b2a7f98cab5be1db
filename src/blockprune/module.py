"""The LightningModule: forward, losses, optimiser and metrics for sequence classification."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from blockprune.distill import Distillation

#: Parameters whose names end like this are learned pruning scores (own LR, no weight decay).
SCORES_SUFFIX = "mask_scores"
_NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layernorm", "layer_norm")


def merge_rank_shares(shares: list[list[int]]) -> list[int]:
    """Per-example results of the DDP ranks back in dataset order: rank ``r`` of ``w`` evaluated
    examples ``r, r + w, r + 2w, ...`` (``UnrepeatedDistributedSampler`` without shuffling)."""
    merged = [0] * sum(map(len, shares))
    for rank, share in enumerate(shares):
        merged[rank :: len(shares)] = share
    return merged


class ClassifierModule(L.LightningModule):
    """Fine-tunes (and, with the pruning and distillation callbacks, prunes and distils) a classifier.

    The module stays ignorant of pruning and distillation mechanics: pruning adds score
    parameters (optimised here in their own group) and penalty terms to the model, and the
    distillation callback adds teacher logits to the batch and owns the loss formula.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        scores_lr: float = 1e-2,
        distillation: Distillation | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "distillation"])
        self.model = model.train()  # from_pretrained returns eval mode; Lightning keeps modes as found
        self.distillation = distillation
        num_labels = model.config.num_labels
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=num_labels, average="micro"),
                "f1_macro": MulticlassF1Score(num_classes=num_labels, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        #: The last test run's predicted label per example, in the test loader's order: what a
        #: paired comparison with another model on the same examples needs (blockprune.evaluation).
        self.test_predictions: list[int] = []
        self._test_batches: list[torch.Tensor] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self.model(**inputs).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.distillation is not None:  # the student's forward pass, with what the teacher's losses need
            losses = self.distillation.training_loss(self.model, batch)
        else:
            losses = {"loss": nn.functional.cross_entropy(self(batch), batch["labels"])}
        penalties = [m.regularization_loss() for m in self._regularized()]
        if penalties:
            losses["prune_reg"] = torch.stack(penalties).sum()
            losses["loss"] = losses["loss"] + losses["prune_reg"]
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=True, on_epoch=True)
        return losses["loss"]

    def _regularized(self) -> list[nn.Module]:
        """Modules that add a penalty to the loss (soft movement pruning), found once per model."""
        if getattr(self, "_regularized_key", None) != id(self.model):  # an id, not the module: no submodule
            self._regularized_key = id(self.model)
            self._regularized_modules = [
                m
                for m in self.model.modules()
                if hasattr(m, "regularization_loss")
                and not getattr(getattr(m, "binarizer", None), "name", "") == "topk"
            ]
        return self._regularized_modules

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch)
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, batch["labels"]), on_epoch=True, sync_dist=True)
        metrics.update(logits, batch["labels"])
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_test_epoch_start(self) -> None:
        self._test_batches = []

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self._eval_step(batch, self.test_metrics, "test")
        self._test_batches.append(logits.argmax(-1).cpu())

    def on_test_epoch_end(self) -> None:
        local = torch.cat(self._test_batches).tolist() if self._test_batches else []
        self._test_batches = []
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        world = torch.distributed.get_world_size() if distributed else 1
        if world == 1:
            self.test_predictions = local
            return
        # Under DDP each rank tested examples rank, rank + world, ... (UnrepeatedDistributedSampler).
        shares: list[list[int]] = [[] for _ in range(world)]
        torch.distributed.all_gather_object(shares, local)
        self.test_predictions = merge_rank_shares(shares)

    def configure_optimizers(self) -> dict[str, Any]:
        groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "scores": []}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            if name.endswith(SCORES_SUFFIX):
                groups["scores"].append(param)
            elif any(key in name for key in _NO_DECAY):
                groups["no_decay"].append(param)
            else:
                groups["decay"].append(param)
        param_groups = [
            {"params": groups["decay"], "weight_decay": self.hparams.weight_decay},
            {"params": groups["no_decay"], "weight_decay": 0.0},
        ]
        if groups["scores"]:
            param_groups.append({"params": groups["scores"], "weight_decay": 0.0, "lr": self.hparams.scores_lr})
        optimizer = torch.optim.AdamW(param_groups, lr=self.hparams.lr)
        total = self.trainer.estimated_stepping_batches
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
