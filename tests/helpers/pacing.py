"""A test-only Lightning callback (importable by jobs started with tests/ on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class Pace(L.Callback):
    """Writes the optimiser steps done so far to ``progress_file`` at every batch start, then
    sleeps, so that a test can kill the job at a known point of its schedule."""

    def __init__(self, progress_file: str, seconds: float = 0.2) -> None:
        self.progress_file = Path(progress_file)
        self.seconds = seconds

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.progress_file)
        time.sleep(self.seconds)
