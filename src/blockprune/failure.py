"""What a failed job leaves behind, so that a multirun goes on and its end still shows the failure."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from blockprune.atomic import write_json
from blockprune.redact import redacted_container

log = logging.getLogger("blockprune")


class FailedJobsExit(Callback):
    """Hydra callback: after a multirun, exit non-zero if any job's results.json says failed.

    Jobs catch their own errors (so one bad job never takes the sweep down); this makes the
    failure visible to the shell and to CI at the end.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = [
            p.parent
            for p in Path(config.hydra.sweep.dir).glob("*/results.json")
            if json.loads(p.read_text(encoding="utf-8")).get("status") == "failed"
        ]
        if failed:
            log.error("%d job(s) failed: %s", len(failed), ", ".join(map(str, failed)))
            sys.exit(1)


def write_failure(cfg: DictConfig, err: BaseException) -> None:
    """A failed multirun job still leaves a results.json, so the report shows the row as failed."""
    try:
        config = redacted_container(cfg)
    except Exception:  # noqa: BLE001 - a bad override may be exactly what cannot resolve
        config = redacted_container(cfg, resolve=False)
    write_json(
        Path(HydraConfig.get().runtime.output_dir) / "results.json",
        {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
            "task_name": cfg.get("task_name"),
            "config": config,
        },
    )
