"""Dashboard names of a job, from its folder: unique across sweeps and studies, one group per sweep.

A W&B run named ``${task_name}-${hydra:job.num}`` repeats: a study's baseline (a single run,
job 0) and its first pruned job are both ``<task>-0``, and every study ever run with a preset
would share one group. The job's folder is unique by construction, so the run is named after
it: ``train/multirun_2026-12-02_10-00-00/1`` for the second job of a daily sweep,
``table1/2026-12-02_10-00-00/pruned/3`` for a study's row. The group is the first two levels of
that folder under ``outputs/`` (the sweep, the study, or the single run itself), so a study's
baseline, pruned jobs and report land in one group. ``${blockprune_run:name|group|job_type}``
in conf/logger/wandb.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _parts(output_dir: str | Path, log_dir: str | Path) -> tuple[tuple[str, ...], bool]:
    """The folder's path parts under ``log_dir`` (True), else under the working directory or absolute (False)."""
    path = Path(output_dir).expanduser().resolve()
    for base, under_log in ((Path(log_dir).expanduser().resolve(), True), (Path.cwd().resolve(), False)):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        if rel.parts:
            return rel.parts, under_log
    return path.parts, False


def run_name(output_dir: str | Path, log_dir: str | Path) -> str:
    """The job folder, relative to the outputs folder where it is inside it."""
    parts, _ = _parts(output_dir, log_dir)
    return "/".join(parts).replace("//", "/")


def run_group(output_dir: str | Path, log_dir: str | Path) -> str:
    """``<task>/<sweep or study or run folder>`` under the outputs folder; elsewhere the job folder's parent."""
    parts, under_log = _parts(output_dir, log_dir)
    group = parts[:2] if under_log else parts[:-1] or parts
    return "/".join(group).replace("//", "/")


def job_type(cfg: DictConfig) -> str:
    """``teacher`` (a cached dense teacher, blockprune.teacher), ``pruned`` or ``baseline``."""
    teachers = OmegaConf.select(cfg, "teacher.cache_dir", default=None)
    if teachers and Path(str(cfg.paths.output_dir)).resolve().parent == Path(str(teachers)).resolve():
        return "teacher"
    prune = cfg.get("prune")
    return "pruned" if prune and ("_target_" in prune or prune.get("sparsity")) else "baseline"


def run_info(what: str, *, _root_: Any) -> str:
    """Resolver ``${blockprune_run:name}``, ``${blockprune_run:group}``, ``${blockprune_run:job_type}``."""
    if what == "job_type":
        return job_type(_root_)
    output_dir, log_dir = str(_root_.paths.output_dir), str(_root_.paths.log_dir)
    if what == "name":
        return run_name(output_dir, log_dir)
    if what == "group":
        return run_group(output_dir, log_dir)
    raise ValueError(f"${{blockprune_run:{what}}}: use name, group or job_type")
