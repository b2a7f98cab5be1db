"""The dense fine-tuned teacher a pruned or distilled job needs, fine-tuned once and shared.

``python train.py -m prune.sparsity=0.25,0.5,0.75 distill=on`` on a model that is not yet a
fine-tuned classifier (the default e5-small-mr, the tiny test BERT) has nothing to distil from
and nothing fine-tuned to prune. Rather than making the user train a baseline and pass
``init_from`` by hand, the first job that needs it fine-tunes the dense model as a normal job
(``train.py`` in a subprocess, ``prune=none distill=off``) into
``<teacher.cache_dir>/<hash>/``, where the hash covers only what defines that model: data,
model, seed, trainer and module settings (not pruning, distillation or output paths). Every job
of the sweep, and of later sweeps with the same settings, then starts from it and distils from
it (``init_from``, which ``distill.teacher`` follows). Jobs running in parallel wait on a file
lock instead of each training one; a killed teacher run is a job folder with
``checkpoints/last.ckpt`` and resumes the next time any job needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from blockprune.config import CONFIG_DIR, entry_script
from blockprune.errors import BlockpruneError
from blockprune.redact import env_indirect_override, redact

log = logging.getLogger("blockprune")

#: Top-level keys whose settings define the teacher, and the sub-keys that do not (locations, workers).
_DEFINING = ("seed", "data", "model", "trainer", "module")
_NOT_DEFINING = {
    "data": ("cache_dir", "download_dir", "num_workers"),
    "trainer": ("default_root_dir",),
    "module": ("scores_lr",),
}
_DATA_FILES = ("file", "train_file", "val_file", "test_file")
#: Overrides of the job that do not carry over to its teacher (the teacher job sets its own).
_JOB_ONLY = (
    "prune",
    "distill",
    "init_from",
    "resume",
    "vocab",
    "bench",
    "task_name",
    "teacher",
    "save_model",
    "test",
    "tags",
    "hub",
    "deploy",
    "hydra.",
)
FAILED = "teacher_failed.json"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _file_digest(path: str) -> str | None:
    p = Path(path).expanduser()
    if not p.is_file():
        return None
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def teacher_spec(cfg: DictConfig | dict) -> dict[str, Any]:
    """What defines the teacher of a job: its data (and the data files' contents), model, seed,
    trainer and module settings, and how the best checkpoint is chosen. Works on a job's config
    and on the resolved ``config`` a finished job wrote into results.json."""
    spec: dict[str, Any] = {}
    for key in _DEFINING:
        node = cfg.get(key)
        if isinstance(node, (DictConfig, dict)):
            value = {k: _plain(node[k]) for k in node if k not in _NOT_DEFINING.get(key, ())}
        else:
            value = _plain(node)
        spec[key] = value
    data = spec.get("data") or {}
    spec["data_files"] = {k: _file_digest(data[k]) for k in _DATA_FILES if isinstance(data.get(k), str)}
    best = (
        OmegaConf.select(cfg, "callbacks.model_checkpoint")
        if isinstance(cfg, DictConfig)
        else (cfg.get("callbacks") or {}).get("model_checkpoint")
    )
    spec["best_checkpoint"] = {k: _plain(best.get(k)) for k in ("monitor", "mode")} if best else None
    return spec


def teacher_key(spec: dict[str, Any], masked: bool = False) -> str:
    """A short stable hash of a teacher spec (the teacher's folder name).

    ``masked``: the hash of the spec with its secrets masked, as results.json records the config
    (what ``finished_teacher`` can check a folder against; a data URL's query string is masked there)."""
    if masked:
        spec = redact(json.loads(json.dumps(spec, default=str)))
    text = json.dumps(spec, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_finetuned_classifier(name_or_path: str | None) -> bool:
    """Whether the model a job starts from is already a fine-tuned sequence classifier (a
    classification head with named labels). A model built from scratch (no ``name_or_path``)
    is not; one whose config cannot be read counts as one, so that loading it later gives its
    own clear error rather than a teacher run."""
    if not name_or_path:
        return False
    try:
        if Path(name_or_path, "config.json").is_file():
            config = json.loads(Path(name_or_path, "config.json").read_text(encoding="utf-8"))
        else:
            from transformers import AutoConfig

            from blockprune.models import hub_kwargs

            config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs(name_or_path)).to_dict()
    except (OSError, ValueError):
        return True
    head = any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    labels = [str(v) for v in (config.get("id2label") or {}).values()]
    return head and bool(labels) and not all(re.fullmatch(r"LABEL_\d+", v) for v in labels)


def needs_teacher(cfg: DictConfig) -> bool:
    """A job that prunes or distils, with no ``init_from``, no teacher of its own choosing, on a
    model that is not yet a fine-tuned classifier (and ``teacher.auto`` on)."""
    if not OmegaConf.select(cfg, "teacher.auto", default=False) or cfg.get("init_from"):
        return False
    distill, prune = cfg.get("distill"), cfg.get("prune")
    distils = bool(distill) and "_target_" in distill
    prunes = bool(prune) and ("_target_" in prune or bool(prune.get("sparsity")))
    if not (distils or prunes):
        return False
    start = OmegaConf.select(cfg, "model.net.name_or_path", default=None)
    if distils and str(distill.get("teacher")) not in (str(start), str(cfg.model.get("tokenizer"))):
        return False  # the user named a teacher: distil from it, start from model.net as asked
    return not is_finetuned_classifier(start)


def _quote(value: str) -> str:
    """A Hydra override value, quoted when it holds characters the override grammar would read."""
    return value if re.fullmatch(r"[\w./~:+-]+", value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _job_only(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key != "hydra.searchpath" and any(
        key == k or key.startswith((k + ".", k + "/")) or (k.endswith(".") and key.startswith(k)) for k in _JOB_ONLY
    )


def teacher_command(teacher_dir: Path) -> list[str]:
    """``train.py`` with this job's config sources and overrides, minus pruning, distillation
    and the job's own outputs, writing into ``teacher_dir``."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    flags: list[str] = []
    for source in hydra.runtime.get("config_sources") or []:
        path = str(source.path).removeprefix("file://")
        if source.provider == "command-line" and source.schema == "file":
            flags += ["--config-dir", path]
        elif source.provider == "main" and source.schema == "file" and Path(path).resolve() != CONFIG_DIR:
            flags += ["--config-path", path]
    if hydra.job.get("config_name") not in (None, "config"):
        flags += ["--config-name", hydra.job.config_name]
    # secret values move into environment variables the subprocess inherits: its command line
    # (visible to `ps`, logged below) holds only ${oc.env:...} references
    overrides = [env_indirect_override(o) for o in hydra.overrides.task if not _job_only(o)]
    return [
        sys.executable,
        str(entry_script()),
        *flags,
        *overrides,
        "prune=none",
        "prune.sparsity=0",
        "distill=off",
        "init_from=null",
        "vocab.trim=false",
        "bench.enabled=false",
        "save_model=true",
        "teacher.auto=false",
        "hub.push=false",
        "task_name=teacher",
        f"hydra.run.dir={_quote(str(teacher_dir))}",
    ]


def finished_teacher(teacher_dir: Path, spec: dict[str, Any]) -> Path | None:
    """The saved model of a completed teacher job in ``teacher_dir`` trained with ``spec``:
    its ``model/`` folder, or for a cross-validation job (``data.cv_folds``) the job folder itself,
    whose ``fold_k/model`` each fold starts from (``crossval.fold_init``)."""
    results = teacher_dir / "results.json"
    if not results.is_file():
        return None
    done = json.loads(results.read_text(encoding="utf-8"))
    model = Path(done.get("model_dir") or teacher_dir / "model")
    saved = (model / "config.json").is_file() or (model / "fold_0" / "model" / "config.json").is_file()
    if done.get("status") != "completed" or not saved:
        return None
    if teacher_key(teacher_spec(done.get("config") or {}), masked=True) != teacher_key(spec, masked=True):
        raise BlockpruneError(
            f"{teacher_dir} holds a teacher trained with other settings than its folder name says "
            f"(hash {teacher_key(spec)}). Delete that folder; the next job fine-tunes the teacher again."
        )
    return model


def _describe(model: Path) -> str:
    results = model / "results.json" if (model / "results.json").is_file() else model.parent / "results.json"
    metrics = json.loads(results.read_text(encoding="utf-8")).get("metrics", {})
    parts = [f"{k} {metrics[k]:.4f}" for k in ("val/acc", "test/acc") if isinstance(metrics.get(k), (int, float))]
    return f"{model}" + (f" ({', '.join(parts)})" if parts else "")


def _train_teacher(teacher_dir: Path, spec: dict[str, Any]) -> Path:
    resumed = (teacher_dir / "checkpoints" / "last.ckpt").is_file()
    (teacher_dir / FAILED).unlink(missing_ok=True)
    cmd = teacher_command(teacher_dir)
    log.info(
        "teacher: %s the dense teacher in %s (once; every job with these data/model/trainer settings reuses it): %s",
        "resuming the killed fine-tuning of" if resumed else "fine-tuning",
        teacher_dir,
        " ".join(cmd),
    )
    from hydra.core.hydra_config import HydraConfig

    cwd = OmegaConf.select(HydraConfig.get(), "runtime.cwd", default=None) or os.getcwd()
    code = subprocess.run(cmd, cwd=cwd).returncode
    model = finished_teacher(teacher_dir, spec)
    if code != 0 or model is None:
        teacher_dir.mkdir(parents=True, exist_ok=True)
        (teacher_dir / FAILED).write_text(json.dumps({"time": time.time(), "exit_code": code}), encoding="utf-8")
        raise BlockpruneError(
            f"the teacher's fine-tuning failed (exit code {code}); its log and checkpoints are in {teacher_dir}. "
            "Fix the cause and run the same command again: the teacher resumes from its last.ckpt. "
            "Or give a fine-tuned model yourself: init_from=<model folder> or distill.teacher=<it>."
        )
    return model


def provide_teacher(cfg: DictConfig, poll_s: float = 30.0) -> Path | None:
    """When the job needs a teacher (``needs_teacher``): reuse the cached one or fine-tune it
    (under a lock), then point ``init_from`` at it, which ``distill.teacher`` follows.
    Returns the teacher's model folder, or None when the job needs none. ``main.train`` checks the
    config (and a Hub push) before calling this, so a bad setting fails before the teacher's fine-tuning."""
    if not needs_teacher(cfg):
        return None
    from filelock import FileLock, Timeout

    spec = teacher_spec(cfg)
    teacher_dir = Path(str(cfg.teacher.cache_dir)).expanduser() / teacher_key(spec)
    model = finished_teacher(teacher_dir, spec)
    if model is None:
        teacher_dir.parent.mkdir(parents=True, exist_ok=True)
        lock, since = FileLock(str(teacher_dir) + ".lock"), time.time()
        while True:
            try:
                lock.acquire(timeout=poll_s)
                break
            except Timeout:
                log.info(
                    "teacher: waiting for another job fine-tuning it in %s (lock %s.lock)", teacher_dir, teacher_dir
                )
        try:
            model = finished_teacher(teacher_dir, spec)  # another job may have finished it while we waited
            failed = teacher_dir / FAILED
            if model is None and failed.is_file() and json.loads(failed.read_text())["time"] >= since:
                raise BlockpruneError(
                    f"the teacher's fine-tuning failed in another job of this sweep; see {teacher_dir}. Fix the "
                    "cause and run the command again: the teacher resumes from its last.ckpt."
                )
            if model is None:
                model = _train_teacher(teacher_dir, spec)
                log.info("teacher: fine-tuned %s", _describe(model))
            else:
                log.info("teacher: another job fine-tuned it meanwhile: %s", _describe(model))
        finally:
            lock.release()
    else:
        log.info("teacher: reusing %s", _describe(model))
    with open_dict(cfg):
        cfg.init_from = str(model)
    distils = bool(cfg.get("distill")) and "_target_" in cfg.distill
    log.info("teacher: this job starts from %s (init_from)%s", model, " and distils from it" if distils else "")
    return model
