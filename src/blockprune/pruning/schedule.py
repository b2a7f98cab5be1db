"""Cubic sparsity schedule (Zhu & Gupta 2017, as used by movement pruning)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """Dense for the first ``warmup`` fraction of steps, then sparsity rises as
    s_t = s_final * (1 - (1 - p)^3) with p the progress through the pruning phase, and holds
    at s_final for the last ``hold`` fraction (so the remaining weights can recover).
    """

    final_sparsity: float
    total_steps: int
    warmup: float = 0.1
    hold: float = 0.2

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup * self.total_steps))

    @property
    def hold_start(self) -> int:
        return self.total_steps - int(round(self.hold * self.total_steps))

    def progress(self, step: int) -> float:
        """Fraction of the way through the pruning phase: 0 during warm-up, 1 from the hold on."""
        if step < self.warmup_steps:
            return 0.0
        if step >= self.hold_start:
            return 1.0
        return (step - self.warmup_steps) / max(1, self.hold_start - self.warmup_steps)

    def sparsity(self, step: int) -> float:
        return self.final_sparsity * (1.0 - (1.0 - self.progress(step)) ** 3)
