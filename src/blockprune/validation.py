"""Config checks that run before anything is loaded or written.

Most values are checked by the component they configure, when it is built (pruning, distillation,
data); this module covers the values nobody reads until late in a job (benchmark, vocabulary
corpora, the precision the device cannot do), so a mistake costs seconds, not a training run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from blockprune.deploy import check_deploy_config
from blockprune.errors import ConfigError

_CPU_PRECISIONS = ("32", "32-true", "64", "64-true", "bf16-mixed", "bf16-true")
_FP16_PRECISIONS = ("16", "16-mixed", "16-true")
_GPU_ACCELERATORS = ("gpu", "cuda")
#: What the module logs each validation epoch, and the direction in which each gets better.
VALIDATION_METRICS = {"val/loss": "min", "val/acc": "max", "val/f1_macro": "max"}


def _is_cv_job(cfg: DictConfig, folder: str) -> bool:
    """A cross-validation job folder is a valid ``init_from`` for a CV job: each fold starts from
    its own fold's model (``crossval.fold_init`` checks every fold)."""
    return bool((cfg.get("data") or {}).get("cv_folds")) and Path(folder, "fold_0", "model", "config.json").is_file()


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key and the allowed values for the first bad setting found."""
    check_precision(str(cfg.trainer.get("precision", "32")), str(cfg.trainer.get("accelerator", "auto")))
    module = cfg.get("module") or {}
    if not float(module.get("lr", 1)) > 0:
        raise ConfigError(f"module.lr={module.lr} must be > 0 (typical for fine-tuning: 1e-5 to 1e-4).")
    if float(module.get("weight_decay", 0)) < 0:
        raise ConfigError(f"module.weight_decay={module.weight_decay} must be >= 0.")
    if not 0 <= float(module.get("warmup_ratio", 0)) < 1:
        raise ConfigError(f"module.warmup_ratio={module.warmup_ratio} must be in [0, 1).")
    for key in ("init_from", "model.tokenizer"):
        value = cfg.get("init_from") if key == "init_from" else cfg.model.get("tokenizer")
        if (
            value
            and _looks_local(str(value))
            and not Path(str(value), "config.json").is_file()
            and not Path(str(value), "tokenizer.json").is_file()
            and not (key == "init_from" and _is_cv_job(cfg, str(value)))
        ):
            raise ConfigError(
                f"{key}={value}: no model folder there (no config.json). Fix: give the folder that "
                "save_pretrained wrote (e.g. outputs/<task>/<run>/model) or a hub id."
            )
    bench = cfg.get("bench") or {}
    if bench.get("enabled"):
        from blockprune.bench.dtypes import normalise_dtype

        try:
            normalise_dtype(bench.get("dtype", "float32"))
        except ConfigError as err:
            raise ConfigError(f"bench.dtype: {err}") from err
        if bench.get("device") and str(bench.device).split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError(f"bench.device={bench.device}: use null (automatic), cpu or cuda[:N].")
        if str(bench.get("device") or "").startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"bench.device={bench.device} but this machine has no CUDA device; use null or cpu.")
        for key in ("batch_size", "warmup", "repeats"):
            if int(bench.get(key, 1)) < 1:
                raise ConfigError(f"bench.{key}={bench.get(key)} must be >= 1.")
    if (cfg.get("data") or {}).get("bucket_by_length") and "ddp" in str(cfg.trainer.get("strategy", "")):
        raise ConfigError(
            "data.bucket_by_length=true with trainer.strategy=ddp: Lightning cannot shard a length-bucketed "
            "batch sampler. Fix: data.bucket_by_length=false for DDP jobs."
        )
    check_checkpoint_monitor((cfg.get("callbacks") or {}).get("model_checkpoint"))
    check_deploy_config(cfg.get("deploy"))
    vocab = cfg.get("vocab") or {}
    for path in vocab.get("extra_corpora") or []:
        if not Path(str(path)).is_file():
            raise ConfigError(
                f"vocab.extra_corpora: {path} is not a file. Fix: give CSV/TSV/JSONL files with a "
                f"'{cfg.data.get('text_column', 'Text')}' column."
            )


def check_checkpoint_monitor(checkpoint: DictConfig | None) -> None:
    """The metric that picks the kept checkpoint must be one the module logs, in its own direction:
    Lightning finds a misspelt name only after the first epoch, and a wrong mode keeps the worst epoch."""
    if not checkpoint or not checkpoint.get("monitor"):
        return
    monitor, mode = str(checkpoint.monitor), str(checkpoint.get("mode", "min"))
    if monitor not in VALIDATION_METRICS:
        raise ConfigError(
            f"callbacks.model_checkpoint.monitor={monitor}: not a logged validation metric. "
            f"Use one of {sorted(VALIDATION_METRICS)}."
        )
    if mode != VALIDATION_METRICS[monitor]:
        raise ConfigError(
            f"callbacks.model_checkpoint.mode={mode} with monitor={monitor} keeps the worst epoch. "
            f"Fix: callbacks.model_checkpoint.mode={VALIDATION_METRICS[monitor]}."
        )


def check_precision(precision: str, accelerator: str = "auto") -> None:
    """Refuse a precision this machine cannot train in, instead of Lightning's silent swap
    (16-mixed on CPU quietly becomes bf16-mixed) or a failure at the first step."""
    wants_gpu = accelerator in _GPU_ACCELERATORS
    if wants_gpu and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA device. "
            "Fix: trainer=cpu (or trainer.accelerator=auto)."
        )
    on_gpu = wants_gpu or (accelerator == "auto" and torch.cuda.is_available())
    allowed = list(_CPU_PRECISIONS)
    if on_gpu:
        allowed += list(_FP16_PRECISIONS)
        if not torch.cuda.is_bf16_supported():
            allowed = [p for p in allowed if not p.startswith("bf16")]
    if precision not in allowed:
        device = f"this GPU ({torch.cuda.get_device_name()})" if on_gpu else "CPU"
        raise ConfigError(f"trainer.precision={precision} cannot run on {device}. Allowed here: {allowed}.")


def _looks_local(value: str) -> bool:
    """A filesystem path rather than a hub id (``org/name``)."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or Path(value).exists()
