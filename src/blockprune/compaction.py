"""The step after a pruned job's training: bake masks, remove empty heads/neurons, prove equal
logits, optionally fine-tune the "filled" model, and re-test what will be saved."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from blockprune.evaluation import test_predictions
from blockprune.module import ClassifierModule
from blockprune.pruning import compact_model, sparsity_stats


def compact_and_check(
    module: ClassifierModule,
    trainer: L.Trainer,
    datamodule,
    pruning,
    make_trainer: Callable[..., L.Trainer],
    module_kwargs: dict[str, Any],
    test: bool,
) -> dict[str, Any]:
    """Compact ``module.model`` in place and return the pruning/compaction sections of results.json.

    With ``pruning.fill_epochs > 0`` the kept heads get their pruned blocks back and the compacted
    model is fine-tuned for that many epochs (nn_pruning's "filled" stage) before the re-test;
    ``make_trainer(max_epochs=..., callbacks=..., logger=..., enable_checkpointing=...)`` builds
    that trainer from the job's trainer config.
    """
    model = module.model.eval()
    batch = next(iter(datamodule.val_dataloader()))
    batch = {k: v.to(module.device) for k, v in batch.items()}
    stats = sparsity_stats(model)
    with torch.no_grad():
        masked_logits = module(batch).float()
    exact = copy.deepcopy(module) if pruning.fill_epochs else module
    report = compact_model(exact.model)
    with torch.no_grad():
        diff = (exact(batch).float() - masked_logits).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"compaction changed the logits by {diff:.2e}; this is a bug, please report it")
    if pruning.fill_epochs:
        del exact
        compact_model(model, fill_heads=True)
        module = ClassifierModule(model.train(), **module_kwargs, distillation=module.distillation)
        fill_callbacks = [cb for cb in trainer.callbacks if type(cb).__name__ in ("Distillation", "CarbonTracking")]
        trainer = make_trainer(
            max_epochs=pruning.fill_epochs,
            callbacks=fill_callbacks,
            logger=trainer.loggers or False,
            enable_checkpointing=False,
        )
        trainer.fit(module, datamodule=datamodule)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0] if test else {}
    return {
        "pruning": {
            **stats,
            "target_sparsity": pruning.sparsity,
            "method": pruning.method,
            "fill_epochs": pruning.fill_epochs,
        },
        "compaction": {**report.to_dict(), "max_abs_logit_diff": diff},
        "metrics_compacted": metrics,
        "predictions": test_predictions(datamodule, module.test_predictions) if test else None,
    }
