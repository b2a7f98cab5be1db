"""The Hydra entry: ``train(cfg)`` reads as the story of one job."""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from blockprune.callbacks import LastCheckpoint
from blockprune.config import CONFIG_DIR, entry_script
from blockprune.carbon import CarbonTracking
from blockprune.atomic import MODEL_KIND, atomic_path, remove_stale_temporaries, write_json
from blockprune.distributed import environment_snapshot, job_command_for_ranks, release_ranks
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.benchmark import benchmark_models
from blockprune.flops import count_parameters, flops_per_token
from blockprune.models import load_classifier, model_max_length
from blockprune.module import ClassifierModule
from blockprune.redact import redacted_argv, redacted_container
from blockprune.resume import CsvHistory, ResumableTraining, find_checkpoint
from blockprune.validation import check_config

log = logging.getLogger("blockprune")

def typical_length(datamodule) -> int:
    """The sequence length a padded batch of this data usually has: the 95th percentile of the
    training texts' token counts, capped at max_length. FLOPs and speed are quoted at it."""
    stats = datamodule.report["tokens"]["train"]
    return int(min(datamodule.max_length, math.ceil(stats["p95"])))


def build(node: DictConfig, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, letting a component's own user error through unwrapped
    (Hydra wraps it in an InstantiationException, which would print as a traceback)."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, BlockpruneError):
            raise err.__cause__ from None
        raise


def build_pruning(prune: DictConfig | None):
    """The pruning callback, or None for the dense baseline.

    ``prune=none`` with a sparsity above 0 (the everyday ``python train.py -m
    prune.sparsity=0.25,0.5,0.75``) means block pruning with ``conf/prune/block.yaml``'s settings.
    """
    if not prune or ("_target_" not in prune and not prune.get("sparsity")):
        return None
    if "_target_" not in prune:
        prune = OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "prune" / "block.yaml"), prune)
    return build(prune)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    return [build(c) for c in (group or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Seed; build data, model, pruning, callbacks, loggers, trainer; fit (continuing from
    ``checkpoints/last.ckpt`` when a killed job left one, see ``resume``); test the best
    weights; compact; save; write results.json. Returns the results. Under DDP (``trainer=ddp``)
    every rank runs this; rank 0 alone writes files."""
    start, environment = time.time(), environment_snapshot()
    out_dir = Path(cfg.paths.output_dir)
    # Every check that can fail comes before the first file is written (loggers, checkpoints).
    check_config(cfg)
    pruning = build_pruning(cfg.get("prune"))
    distillation = build(cfg.distill) if cfg.get("distill") else None
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.data)  # the job writes its data_report.json (rank 0, with the results)
    datamodule.prepare_data()
    datamodule.setup("fit")

    labels = {"num_labels": datamodule.num_labels, "id2label": datamodule.id2label, "label2id": datamodule.label2id}
    model = load_classifier(cfg.init_from, **labels) if cfg.init_from else build(cfg.model.net)(**labels)
    if cfg.data.max_length > model_max_length(model):
        raise ConfigError(
            f"data.max_length={cfg.data.max_length} exceeds the model's limit of {model_max_length(model)} positions; "
            f"set data.max_length<={model_max_length(model)}."
        )
    seq_len = typical_length(datamodule)
    dense = {"params": count_parameters(model), "flops_per_token": flops_per_token(model, seq_len)["total"]}
    dense_reference = copy.deepcopy(model).eval() if pruning is not None and cfg.bench.enabled else None
    if pruning is not None:
        pruning.patch(model)
    if distillation is not None:
        distillation.teacher = distillation.load_teacher(model, datamodule.tokenizer)

    config = redacted_container(cfg)
    module = ClassifierModule(model, **cfg.module, distillation=distillation)
    resumable = ResumableTraining(config=_training_config(config))
    extra = [cb for cb in (pruning, distillation, resumable) if cb is not None]
    callbacks = _instantiate_group(cfg.get("callbacks")) + extra
    callbacks.sort(key=lambda cb: isinstance(cb, LastCheckpoint))  # saves after the others updated their state
    last = next((cb for cb in callbacks if isinstance(cb, LastCheckpoint)), None)
    ckpt_path = find_checkpoint(cfg.get("resume", "auto"), last.last_path.parent if last else None)
    loggers = _instantiate_group(cfg.get("logger"))
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
            trainer.fit(module, train_dataloaders=resumable.wrap(datamodule.train_dataloader(), trainer),
                        val_dataloaders=datamodule.val_dataloader(), ckpt_path=ckpt_path, weights_only=True)
        best_cb = next((cb for cb in trainer.checkpoint_callbacks if not isinstance(cb, LastCheckpoint)), None)
        best = best_cb.best_model_path if best_cb is not None else ""
        val = trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
        test = trainer.test(module, datamodule=datamodule, verbose=True)[0] if cfg.test else {}

        results: dict[str, Any] = {
            "status": "completed",
            "task_name": cfg.task_name,
            "metrics": {**val, **test},
            "dense": dense,
            "checkpoint": best or None,
            "world_size": trainer.world_size,
        }
        if pruning is not None:
            results.update(_compact_and_check(module, trainer, datamodule, pruning, cfg))
        if not trainer.is_global_zero:  # the other ranks' part ends with the last collective step
            return results
        write_json(out_dir / "data_report.json", datamodule.report)
        tokenizer = datamodule.tokenizer
        if cfg.vocab.trim:
            tokenizer, results["vocab"], results["metrics_final"] = _trim_vocabulary(module, datamodule, cfg)
        if cfg.bench.enabled:
            results["speed"] = measure_speedup(module.model, dense_reference, seq_len, cfg.bench)
        results["params"] = count_parameters(module.model)
        results["flops_per_token"] = flops_per_token(module.model, seq_len)["total"]
        results["seq_len"] = seq_len

        if cfg.save_model:
            model_dir = out_dir / "model"
            with atomic_path(model_dir, kind=MODEL_KIND) as tmp:
                module.model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            results["model_dir"] = str(model_dir)
        carbon = next((cb for cb in trainer.callbacks if isinstance(cb, CarbonTracking)), None)
        if carbon is not None:
            results["carbon"] = carbon.results
        results["data"] = datamodule.report
        csv_history.merge()  # last: the loggers write no more rows
        results["wall_time_s"] = round(time.time() - start, 1)
        results["config"] = config
        write_json(out_dir / "results.json", results)
        final = results.get("metrics_final") or results.get("metrics_compacted") or results["metrics"]
        log.info("test accuracy of the saved model: %.4f; model: %s; results: %s", final.get("test/acc", float("nan")),
                 results.get("model_dir"), out_dir / "results.json")
        return results
    finally:
        release_ranks(trainer, environment)  # under DDP: the next job of a sweep in this process starts afresh


def _training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config minus what does not shape training (paths, resume), to tell a
    resumed job whose command differs from the killed one's."""
    return {k: v for k, v in config.items() if k not in ("paths", "resume", "hydra")}


def measure_speedup(model, dense_reference, seq_len: int, bench: DictConfig) -> dict[str, Any]:
    """Latency of the final model and, for a pruned job, of the dense model it started from,
    timed alternately in this process (a speed-up depends only on the removed structure)."""
    models = {"dense": dense_reference, "final": model} if dense_reference is not None else {"final": model}
    device = bench.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = benchmark_models(
        {k: m.eval() for k, m in models.items()}, batch_sizes=[bench.batch_size], seq_lens=[None],
        typical_seq_len=seq_len, device=device, dtypes=[bench.dtype], warmup=bench.warmup, repeats=bench.repeats,
    )
    cell = result["cells"][0]
    final = cell["results"]["final"]
    return {
        "speedup": final["speedup"] if dense_reference is not None else 1.0,
        "latency_ms": final["median_ms"],
        "dense_latency_ms": cell["results"]["dense"]["median_ms"] if dense_reference is not None else final["median_ms"],
        "measured_over_analytic": final.get("measured_over_analytic"),
        "batch_size": bench.batch_size, "seq_len": seq_len, "device": device, "dtype": bench.dtype,
        "environment": result["environment"],
    }


def _trim_vocabulary(module: ClassifierModule, datamodule, cfg: DictConfig):
    """Keep the vocabulary the training texts use (plus single characters of their scripts),
    then re-test with the trimmed tokenizer, so the reported accuracy is the saved model's."""
    from blockprune.pruning.vocab import changed_tokenization_rate, read_text_column, trim_vocabulary, unk_rate

    extra = [t for f in cfg.vocab.extra_corpora for t in read_text_column(f, cfg.data.text_column)]
    corpus = datamodule.texts("train") + extra
    original = datamodule.tokenizer
    model, tokenizer, stats = trim_vocabulary(
        module.model, original, corpus, keep_script_chars=cfg.vocab.keep_script_chars
    )
    module.model = model
    held_out = datamodule.texts("test")
    info = {
        **stats.to_dict(),
        "heldout_unk_rate_before": unk_rate(original, held_out),
        "heldout_unk_rate": unk_rate(tokenizer, held_out),
        "heldout_changed_tokenization_rate": changed_tokenization_rate(original, tokenizer, held_out),
    }
    metrics = evaluate_texts(model, tokenizer, held_out, datamodule.labels("test"), datamodule.max_length)
    return tokenizer, info, metrics


@torch.no_grad()
def evaluate_texts(model, tokenizer, texts: list[str], labels: list[int], max_length: int, batch_size: int = 64) -> dict:
    """Accuracy and macro-F1 of ``model`` on raw texts through its own tokenizer."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    model.eval()
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        preds.append(model(**{k: v.to(device) for k, v in enc.items()}).logits.argmax(-1).cpu())
    pred, target = torch.cat(preds), torch.tensor(labels)
    n = model.config.num_labels
    return {
        "test/acc": float(multiclass_accuracy(pred, target, num_classes=n, average="micro")),
        "test/f1_macro": float(multiclass_f1_score(pred, target, num_classes=n, average="macro")),
    }


def _compact_and_check(module, trainer, datamodule, pruning, cfg) -> dict[str, Any]:
    """Bake masks, remove empty heads/neurons, prove equal logits, and re-test the compacted model.

    With ``prune.fill_epochs > 0`` the kept heads get their pruned blocks back and the compacted
    model is fine-tuned for that many epochs (nn_pruning's "filled" stage) before the re-test.
    """
    from blockprune.pruning import compact_model, sparsity_stats

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
        module = ClassifierModule(model.train(), **cfg.module, distillation=module.distillation)
        fill_callbacks = [cb for cb in trainer.callbacks if type(cb).__name__ in ("Distillation", "CarbonTracking")]
        trainer = build(cfg.trainer, max_epochs=pruning.fill_epochs, callbacks=fill_callbacks,
                        logger=trainer.loggers or False, enable_checkpointing=False)
        trainer.fit(module, datamodule=datamodule)
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0] if cfg.test else {}
    return {
        "pruning": {**stats, "target_sparsity": pruning.sparsity, "method": pruning.method,
                    "fill_epochs": pruning.fill_epochs},
        "compaction": {**report.to_dict(), "max_abs_logit_diff": diff},
        "metrics_compacted": test,
    }


class FailedJobsExit(Callback):
    """Hydra callback: after a multirun, exit non-zero if any job's results.json says failed.

    Jobs catch their own errors (so one bad job never takes the sweep down); this makes the
    failure visible to the shell and to CI at the end.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = [
            p.parent for p in Path(config.hydra.sweep.dir).glob("*/results.json")
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
    write_json(Path(HydraConfig.get().runtime.output_dir) / "results.json", {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": traceback.format_exc(),
        "task_name": cfg.get("task_name"),
        "config": config,
    })


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
