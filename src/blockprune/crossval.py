"""K-fold cross-validation as one job: K fits of the single-fit story, then pooled test metrics.

On a small dataset one test split of a few hundred texts gives intervals of several points;
testing every example once, each by a model that never saw it, uses the whole labelled set.
Fold ``k`` runs in ``<job>/fold_k/`` with its own checkpoints, logs and results.json (so a
killed job resumes fold by fold); the job's own results.json keeps per-fold metrics and the
metrics pooled over all examples, with the pooled per-example predictions a study pairs
against its baseline. The folds depend only on the data and its seed (``data.splits``), so
every row of a study is tested on the same folds.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from blockprune.atomic import write_json
from blockprune.deploy import pool_deploy
from blockprune.errors import ConfigError
from blockprune.evaluation import record_metrics
from blockprune.redact import redacted_container

log = logging.getLogger(__name__)

#: What the first fold's results stand for in the job's results.json (all folds share the
#: architecture and pruning setting; the per-fold values stay in fold_k/results.json).
_FROM_FIRST_FOLD = (
    "dense",
    "params",
    "flops_per_token",
    "seq_len",
    "speed",
    "pruning",
    "compaction",
    "vocab",
    "world_size",
)


def fold_dir(job_dir: str | Path, fold: int) -> Path:
    return Path(job_dir) / f"fold_{fold}"


def fold_init(init_from: str | None, fold: int, folds: int) -> str | None:
    """The model fold ``fold`` starts from: ``init_from``'s own fold model when it is a CV job
    folder (a pruned fold must start from, and distil from, a baseline that never saw its test
    fold), else ``init_from`` as given."""
    if not init_from:
        return init_from
    model = fold_dir(init_from, fold) / "model"
    if model.is_dir():
        return str(model)
    if (Path(init_from) / "fold_0").is_dir():
        raise ConfigError(
            f"init_from={init_from}: a cross-validation job folder without fold_{fold}/model. Fix: start from a job "
            f"with the same data.cv_folds={folds} (and save_model=true), or from a plain model folder."
        )
    log.warning(
        "cross-validation from init_from=%s, one model for all folds: if it was trained on this data, "
        "its test folds are not unseen",
        init_from,
    )
    return init_from


def fold_config(cfg: DictConfig, fold: int) -> DictConfig:
    """The job's config for fit ``fold``: that CV fold's data, output folder and starting model."""
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.data.cv_fold = fold
        sub.paths.output_dir = str(fold_dir(cfg.paths.output_dir, fold))
        sub.init_from = fold_init(cfg.get("init_from"), fold, cfg.data.cv_folds)
    return sub


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The test metrics of the model a fit saved (after compaction and vocabulary trimming)."""
    return results.get("metrics_final") or results.get("metrics_compacted") or results.get("metrics", {})


def pool_predictions(records: list[dict[str, list]]) -> dict[str, list]:
    """One prediction record over all folds; every example must occur exactly once."""
    pooled: dict[str, list] = {"id": [], "target": [], "pred": []}
    for r in records:
        for key in pooled:
            pooled[key] += r[key]
    if len(set(pooled["id"])) != len(pooled["id"]):
        raise RuntimeError("cross-validation tested an example twice; this is a bug, please report it")
    return pooled


def _sum_carbon(folds: list[dict[str, Any]]) -> dict[str, Any] | None:
    parts = [f["carbon"] for f in folds if f.get("carbon")]
    if not parts:
        return None
    total: dict[str, Any] = {"country_iso_code": parts[0].get("country_iso_code")}
    for task in ("training", "inference"):
        rows = [p[task] for p in parts if task in p]
        if rows:
            total[task] = {k: sum(r.get(k, 0.0) for r in rows) for k in rows[0]}
    return total


def pooled_results(cfg: DictConfig, folds: list[dict[str, Any]], wall_time_s: float) -> dict[str, Any]:
    """The job's results.json: pooled test metrics over all examples, per-fold metrics, and the
    first fold's model sizes and speed."""
    predictions = (
        pool_predictions([f["predictions"] for f in folds]) if all(f.get("predictions") for f in folds) else None
    )
    vals = [f["metrics"].get("val/acc") for f in folds if f["metrics"].get("val/acc") is not None]
    metrics = {"val/acc": sum(vals) / len(vals)} if vals else {}
    if predictions is not None:
        metrics.update(record_metrics(predictions, num_classes=len(folds[0]["data"]["label2id"])))
    results: dict[str, Any] = {
        "status": "completed",
        "task_name": cfg.task_name,
        "metrics": metrics,
        "cv": {
            "folds": int(cfg.data.cv_folds),
            "seed": int(cfg.data.seed),
            "pooled_examples": len(predictions["id"]) if predictions else None,
        },
        "folds": [
            {
                "fold": k,
                "dir": str(fold_dir(cfg.paths.output_dir, k)),
                "metrics": final_metrics(f),
                "val/acc": f["metrics"].get("val/acc"),
                "split_sizes": f["data"]["split_sizes"],
                "wall_time_s": f.get("wall_time_s"),
            }
            for k, f in enumerate(folds)
        ],
        **{key: folds[0][key] for key in _FROM_FIRST_FOLD if key in folds[0]},
    }
    if predictions is not None:
        results["predictions"] = predictions
    if all(f.get("deploy") for f in folds):  # every fold's runtimes re-tested on its own test fold
        results["deploy"] = pool_deploy([f["deploy"] for f in folds])
    if all(f.get("model_dir") for f in folds):
        results["model_dir"] = str(cfg.paths.output_dir)  # fold k's model: fold_k/model (see fold_init)
    carbon = _sum_carbon(folds)
    if carbon:
        results["carbon"] = carbon
    results["wall_time_s"] = round(wall_time_s, 1)
    results["config"] = redacted_container(cfg)
    return results


def cross_validate(cfg: DictConfig, fit: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fit`` (one fit of the job's story) on every fold, then write the pooled results.json."""
    start = time.time()
    count = cfg.data.cv_folds
    if not isinstance(count, int) or isinstance(count, bool) or count < 2:
        raise ConfigError(f"data.cv_folds: must be an integer >= 2 (or null for no cross-validation), got {count!r}.")
    folds = []
    for k in range(count):
        log.info("cross-validation: fold %d of %d", k + 1, cfg.data.cv_folds)
        folds.append(fit(fold_config(cfg, k)))
        if "wandb" in sys.modules:  # one W&B run per fold
            sys.modules["wandb"].finish()
    if rank_zero_only.rank != 0:  # under DDP, rank 0 alone writes files
        return {"status": "completed", "metrics": folds[-1].get("metrics", {})}
    results = pooled_results(cfg, folds, time.time() - start)
    write_json(Path(cfg.paths.output_dir) / "results.json", results)
    log.info(
        "cross-validation: pooled test accuracy %.4f over %s examples; per fold %s",
        results["metrics"].get("test/acc", float("nan")),
        results["cv"]["pooled_examples"],
        [round(f["metrics"].get("test/acc", float("nan")), 4) for f in results["folds"]],
    )
    return results
