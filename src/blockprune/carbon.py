"""Energy and CO2 of training and inference with CodeCarbon's offline tracker, as a callback."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


class CarbonTracking(L.Callback):
    """Measures energy (kWh) and emissions (kg CO2eq) of fitting and of the last test pass.

    Offline tracker only: the carbon intensity comes from CodeCarbon's bundled per-country
    table (``country_iso_code``, default India as in the paper's setting), so no run needs
    the internet. Results go to the loggers and to ``results.json`` via ``results``.
    """

    def __init__(self, country_iso_code: str = "IND", measure_power_secs: float = 5.0) -> None:
        from codecarbon import OfflineEmissionsTracker

        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code,
            measure_power_secs=measure_power_secs,
            save_to_file=False,
            log_level="error",
            tracking_mode="process",
            # CodeCarbon 3 takes a lock file per tracker; the jobs of a sequential sweep run in one
            # process, one tracker each, and without this the second job would trip over the first's.
            allow_multiple_runs=True,
        )
        self.country_iso_code = country_iso_code
        self.results: dict[str, Any] = {"country_iso_code": country_iso_code}

    def _start(self, task: str) -> None:
        self._tracker.start_task(task)

    def _stop(self, task: str, pl_module: L.LightningModule) -> None:
        data = self._tracker.stop_task(task)
        totals = self.results.setdefault(task, {"energy_kwh": 0.0, "emissions_kg": 0.0, "duration_s": 0.0})
        if task == "inference":  # the last test pass is the saved model's
            totals.update(energy_kwh=0.0, emissions_kg=0.0, duration_s=0.0)
        totals["energy_kwh"] += float(data.energy_consumed)  # a filled stage is a second fit: add up
        totals["emissions_kg"] += float(data.emissions)
        totals["duration_s"] += float(data.duration)
        for logger in pl_module.loggers:
            logger.log_metrics(
                {
                    f"carbon/{task}_energy_kwh": float(data.energy_consumed),
                    f"carbon/{task}_emissions_kg": float(data.emissions),
                }
            )

    # Under DDP rank 0 measures for its machine (CodeCarbon estimates the whole machine's CPU/GPU
    # power); on several machines the figures cover rank 0's machine only.
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._start("training")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._stop("training", pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._start("inference")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._stop("inference", pl_module)
