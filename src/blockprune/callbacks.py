"""Small Lightning callbacks that are not pruning, distillation or carbon."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that ignores epochs while a pruning schedule is still moving.

    A checkpoint from the middle of the schedule is less sparse than the target, so it would
    win "best val accuracy" unfairly; only epochs at the final sparsity compete. Any callback
    with an ``in_pruning_phase(step)`` method takes part.
    """

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        if any(getattr(cb, "in_pruning_phase", lambda _: False)(trainer.global_step) for cb in trainer.callbacks):
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
