"""Small Lightning callbacks that are not pruning, distillation or carbon."""

from __future__ import annotations

import time
from pathlib import Path

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


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<dirpath>/last.ckpt`` fresh enough to resume a killed job from (``resume=auto``).

    Written at every epoch end (after validation, and after the best-checkpoint callback has
    updated its state) and, within an epoch, every ``every_n_train_steps`` optimiser steps
    and/or every ``every_n_minutes`` (0 turns a trigger off). Never in the middle of the
    last batch of an epoch: its validation is still to come, and Lightning skips an epoch's
    validation when it resumes from a checkpoint taken there.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0, every_n_minutes: float = 0.0) -> None:
        super().__init__(
            dirpath=dirpath, save_top_k=0, save_last=True, save_on_train_epoch_end=True, enable_version_counter=False
        )
        self.every_steps = int(every_n_train_steps)
        self.every_seconds = float(every_n_minutes) * 60.0
        self._last_save = time.monotonic()

    @property
    def last_path(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def _save(self, trainer: L.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_save = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        due = bool(self.every_steps) and trainer.global_step % self.every_steps == 0
        due = due or (bool(self.every_seconds) and time.monotonic() - self._last_save >= self.every_seconds)
        if trainer.strategy.broadcast(due):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass
