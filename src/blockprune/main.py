"""The Hydra entry: ``train(cfg)`` reads as the story of one job; each step lives in its own module."""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from blockprune.atomic import MODEL_KIND, atomic_path, remove_stale_temporaries, write_json
from blockprune.bench.speedup import measure_speedup
from blockprune.callbacks import LastCheckpoint
from blockprune.carbon import CarbonTracking
from blockprune.compaction import compact_and_check
from blockprune.components import build, build_all, build_pruning
from blockprune.config import CONFIG_DIR, entry_script
from blockprune.crossval import cross_validate
from blockprune.deploy import deploy_after_job
from blockprune.distributed import environment_snapshot, job_command_for_ranks, release_ranks
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.evaluation import record_metrics, test_predictions
from blockprune.failure import write_failure
from blockprune.flops import count_parameters, flops_per_token
from blockprune.hub import check_push, publish
from blockprune.leakage import check_job_models
from blockprune.models import load_classifier, model_max_length, save_tokenizer
from blockprune.module import ClassifierModule
from blockprune.redact import redacted_argv, redacted_container
from blockprune.resume import CsvHistory, ResumableTraining, find_checkpoint
from blockprune.teacher import provide_teacher
from blockprune.validation import check_config
from blockprune.vocab.job import trim_job_vocabulary

log = logging.getLogger("blockprune")


def train(cfg: DictConfig) -> dict[str, Any]:
    """One job: one fit, or with ``data.cv_folds=K`` one fit per fold and test metrics pooled
    over every example (``blockprune.crossval``)."""
    # Every check that can fail comes before the first file is written (teacher, loggers, checkpoints).
    check_config(cfg)
    check_push(cfg)  # hub.push: repo id, token and a reachable hub, before any training
    provide_teacher(cfg)  # no fine-tuned model to prune/distil from: the dense teacher, fine-tuned once (cached)
    return cross_validate(cfg, fit) if cfg.data.get("cv_folds") else fit(cfg)


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Seed; build data, model, pruning, callbacks, loggers, trainer; fit (continuing from
    ``checkpoints/last.ckpt`` when a killed job left one, see ``resume``); test the best
    weights; compact; save; write results.json. Returns the results. Under DDP (``trainer=ddp``)
    every rank runs this; rank 0 alone writes files."""
    start, environment = time.time(), environment_snapshot()
    out_dir = Path(cfg.paths.output_dir)
    pruning = build_pruning(cfg.get("prune"))
    distillation = build(cfg.distill) if cfg.get("distill") else None
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.data)  # the job writes its data_report.json (rank 0, with the results)
    datamodule.prepare_data()
    datamodule.setup("fit")

    model = _build_model(cfg, datamodule)
    seq_len = _typical_length(datamodule)
    dense = {"params": count_parameters(model), "flops_per_token": flops_per_token(model, seq_len)["total"]}
    deployed = bool(cfg.get("deploy") and cfg.deploy.runtimes)  # deploy times against the dense model too
    dense_reference = copy.deepcopy(model).eval() if pruning is not None and (cfg.bench.enabled or deployed) else None
    if pruning is not None:
        pruning.patch(model)
    check_job_models(datamodule, cfg.get("init_from"), distillation.teacher_path if distillation is not None else None)
    if distillation is not None:
        distillation.teacher = distillation.load_teacher(model, datamodule.tokenizer)

    config = redacted_container(cfg)
    module = ClassifierModule(model, **cfg.module, distillation=distillation)
    resumable = ResumableTraining(config=_training_config(config))
    callbacks = build_all(cfg.get("callbacks")) + [cb for cb in (pruning, distillation, resumable) if cb is not None]
    callbacks.sort(key=lambda cb: isinstance(cb, LastCheckpoint))  # saves after the others updated their state
    last = next((cb for cb in callbacks if isinstance(cb, LastCheckpoint)), None)
    ckpt_path = find_checkpoint(cfg.get("resume", "auto"), last.last_path.parent if last else None)
    loggers = build_all(cfg.get("logger"))
    csv_history = CsvHistory(loggers)
    if ckpt_path is not None and rank_zero_only.rank == 0:  # under DDP, rank 0 alone touches files
        log.info("resuming from %s", ckpt_path)
        remove_stale_temporaries(ckpt_path.parent)
        remove_stale_temporaries(out_dir)
        csv_history.set_aside()
    trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    try:
        with redacted_argv():  # a W&B run starts here and records the command line
            for lg in loggers:
                lg.log_hyperparams(config)

        # The training loader is wrapped so that a resumed job sees the batches in the same order;
        # under DDP the other ranks start at this fit, running this job's command (see distributed.py).
        with job_command_for_ranks(str(entry_script()), trainer.world_size):
            trainer.fit(
                module,
                train_dataloaders=resumable.wrap(datamodule.train_dataloader(), trainer),
                val_dataloaders=datamodule.val_dataloader(),
                ckpt_path=ckpt_path,
                weights_only=True,
            )
        best_cb = next((cb for cb in trainer.checkpoint_callbacks if not isinstance(cb, LastCheckpoint)), None)
        best = best_cb.best_model_path if best_cb is not None else ""
        val = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True)[
            0
        ]
        test = trainer.test(module, datamodule=datamodule, verbose=True)[0] if cfg.test else {}

        results: dict[str, Any] = {
            "status": "completed",
            "task_name": cfg.task_name,
            "metrics": {**val, **test},
            "predictions": test_predictions(datamodule, module.test_predictions) if cfg.test else None,
            "dense": dense,
            "checkpoint": best or None,
            "world_size": trainer.world_size,
        }
        if pruning is not None:
            results.update(
                compact_and_check(
                    module,
                    trainer,
                    datamodule,
                    pruning,
                    test=cfg.test,
                    module_kwargs=dict(cfg.module),
                    make_trainer=lambda **kw: build(cfg.trainer, **kw),
                )
            )
        if not trainer.is_global_zero:  # the other ranks' part ends with the last collective step
            return results
        write_json(out_dir / "data_report.json", datamodule.report)
        tokenizer = datamodule.tokenizer
        if cfg.vocab.trim:
            module.model, tokenizer, results["vocab"], results["predictions"] = trim_job_vocabulary(
                module.model, datamodule, list(cfg.vocab.extra_corpora), cfg.vocab.keep_script_chars
            )
            results["metrics_final"] = record_metrics(results["predictions"])
        if cfg.bench.enabled:
            results["speed"] = measure_speedup(
                module.model,
                dense_reference,
                seq_len,
                batch_size=cfg.bench.batch_size,
                device=cfg.bench.device,
                dtype=cfg.bench.dtype,
                warmup=cfg.bench.warmup,
                repeats=cfg.bench.repeats,
            )
        results["params"] = count_parameters(module.model)
        results["flops_per_token"] = flops_per_token(module.model, seq_len)["total"]
        results["seq_len"] = seq_len

        if cfg.save_model:
            model_dir = out_dir / "model"
            with atomic_path(model_dir, kind=MODEL_KIND) as tmp:
                module.model.save_pretrained(tmp)
                save_tokenizer(tokenizer, tmp)
            results["model_dir"] = str(model_dir)
            if cfg.get("deploy") and cfg.deploy.runtimes:  # fast runtimes, re-tested and timed (conf/deploy)
                results["deploy"] = deploy_after_job(
                    module.model, tokenizer, model_dir, dense_reference, datamodule, cfg.deploy, seq_len
                )
        carbon = next((cb for cb in trainer.callbacks if isinstance(cb, CarbonTracking)), None)
        if carbon is not None:
            results["carbon"] = carbon.results
        results["data"] = datamodule.report
        csv_history.merge()  # last: the loggers write no more rows
        results["wall_time_s"] = round(time.time() - start, 1)
        results["config"] = config
        results["hub"] = publish(results, cfg)  # model card in model/README.md; upload with hub.push
        write_json(out_dir / "results.json", results)
        final = results.get("metrics_final") or results.get("metrics_compacted") or results["metrics"]
        log.info(
            "test accuracy of the saved model: %.4f; model: %s; results: %s",
            final.get("test/acc", float("nan")),
            results.get("model_dir"),
            out_dir / "results.json",
        )
        return results
    finally:
        release_ranks(trainer, environment)  # under DDP: the next job of a sweep in this process starts afresh


def _build_model(cfg: DictConfig, datamodule):
    """The classifier to train: ``init_from`` (a fine-tuned folder) or ``model.net``, with the data's labels."""
    labels = {"num_labels": datamodule.num_labels, "id2label": datamodule.id2label, "label2id": datamodule.label2id}
    model = load_classifier(cfg.init_from, **labels) if cfg.init_from else build(cfg.model.net)(**labels)
    if cfg.data.max_length > model_max_length(model):
        raise ConfigError(
            f"data.max_length={cfg.data.max_length} exceeds the model's limit of {model_max_length(model)} positions; "
            f"set data.max_length<={model_max_length(model)}."
        )
    return model


def _typical_length(datamodule) -> int:
    """The sequence length a padded batch of this data usually has: the 95th percentile of the
    training texts' token counts, capped at max_length. FLOPs and speed are quoted at it."""
    stats = datamodule.report["tokens"]["train"]
    return int(min(datamodule.max_length, math.ceil(stats["p95"])))


def _training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config minus what does not shape training (paths, resume), to tell a
    resumed job whose command differs from the killed one's."""
    return {k: v for k, v in config.items() if k not in ("paths", "resume", "hydra")}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job. A single run exits non-zero on error (a user error without a traceback,
    and no results.json); a multirun job records the failure and lets the sweep go on."""
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    try:
        return train(cfg)["metrics"].get("val/acc")
    except Exception as err:
        if multirun:
            log.exception("job failed; the sweep goes on")
            write_failure(cfg, err)
            return None
        if isinstance(err, BlockpruneError):
            log.error("%s", err)
            sys.exit(1)
        raise
    finally:
        if "wandb" in sys.modules:  # one W&B run per job, also in a multirun
            sys.modules["wandb"].finish()


if __name__ == "__main__":  # the installed package has no train.py
    main()
