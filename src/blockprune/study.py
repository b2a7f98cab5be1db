"""The Table I study: a dense baseline, then the pruned jobs as one Hydra multirun, then the report.

Two stages because the pruned jobs start from the baseline's fine-tuned weights and use it as
teacher, as the paper pruned an already fine-tuned model. Each stage runs ``train.py`` in a
subprocess, exactly as a user would type it; the preset (``experiment=<name>``) carries the
settings and ``study.*`` in it says what the pruned stage sweeps. With a launcher among the
overrides (``hydra/launcher=slurm``, docs/cluster.md) the baseline goes through it as well.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from blockprune.atomic import write_json
from blockprune.config import CONFIG_DIR, entry_script, project_root
from blockprune.errors import BlockpruneError
from blockprune.redact import env_indirect_override
from blockprune.report import STUDY_FILE, log_to_wandb, write_report

log = logging.getLogger(__name__)


def study_settings(preset: str, overrides: list[str]) -> dict:
    """The ``study`` section of an experiment preset (sparsities, distillation options)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}", *overrides])
    if "study" not in cfg:
        raise BlockpruneError(f"experiment={preset} has no `study:` section; use a study preset such as table1_cpu.")
    return dict(cfg.study)


def baseline_output(base_dir: Path, overrides: list[str]) -> list[str]:
    """The baseline's leading arguments (Hydra wants ``-m`` before the overrides): its job folder is ``base_dir``.

    A single run never goes through Hydra's launcher, so with one selected (a SLURM job, not the
    login node, should train the baseline) the baseline is a one-job multirun whose job folder
    is the sweep folder itself (``subdir=.``). If it fails, the command still exits 0 (a multirun
    job records its failure in results.json, and FailedJobsExit looks only in subfolders), hence
    the caller's status check.
    """
    if any(o.startswith("hydra/launcher=") for o in overrides):
        return ["-m", f"hydra.sweep.dir={base_dir}", "hydra.sweep.subdir=."]
    return [f"hydra.run.dir={base_dir}"]


def _run(args: list[str]) -> int:
    # secret values reach the jobs through environment variables: the command line (logged, `ps`) holds none
    cmd = [sys.executable, str(entry_script()), *(env_indirect_override(a) for a in args)]
    log.info("study: %s", " ".join(cmd))
    return subprocess.run(cmd, cwd=project_root()).returncode


def run_study(
    preset: str, out_dir: str | Path | None = None, overrides: list[str] | None = None, baseline: str | None = None
) -> int:
    """Run baseline, pruned sweep and report into ``out_dir``; return non-zero if any job failed.

    ``baseline``: an existing baseline job folder to prune from instead of training one; the pruned
    jobs split the data with its ``data.seed`` whatever ``seed`` is, so they are tested on its test examples.
    ``study.seeds=[...]``: the whole study once per seed (``seed_<s>/``), each row compared with
    its own seed's baseline; the report averages the seeds.
    """
    overrides = list(overrides or [])
    study = study_settings(preset, overrides)
    out = Path(out_dir or project_root() / "outputs" / "table1" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    seeds = study.get("seeds") or [None]
    runs = [(out, overrides) if s is None else (out / f"seed_{s}", [*overrides, f"seed={s}"]) for s in seeds]
    write_study_record(out, preset, overrides, baseline, [o for o, _ in runs])
    sweep_code = max(_study_one_seed(preset, o, ov, baseline, study) for o, ov in runs)
    table = write_report([out], out)  # the baseline is found through study.json, as the notebook finds it
    log_to_wandb(table, out, group=study.get("group", preset))
    log.info("study: report in %s\n%s", out, table[["row", "status", "params_M", "speedup", "accuracy"]])
    return sweep_code


def write_study_record(
    out: Path, preset: str, overrides: list[str], baseline: str | None, seed_dirs: list[Path]
) -> None:
    """``study.json``: what the study ran and where each baseline lives, so that the report, the
    notebook and the plot find a baseline given with ``--baseline`` (outside the study folder).
    Written before any job runs: a study that fails half-way still says where its baseline is."""
    baselines = [str(Path(baseline).resolve())] if baseline else [str((d / "baseline").resolve()) for d in seed_dirs]
    write_json(
        out / STUDY_FILE,
        {
            "preset": preset,
            "overrides": overrides,  # write_json masks secrets
            "baselines": baselines,
            "baseline_given": baseline is not None,
        },
    )


def _study_one_seed(preset: str, out: Path, overrides: list[str], baseline: str | None, study: dict) -> int:
    """Baseline (unless given) and the pruned sweep of one seed, into ``out``."""
    base_dir = Path(baseline) if baseline else out / "baseline"
    code = (
        0
        if baseline
        else _run(
            [*baseline_output(base_dir, overrides), f"experiment={preset}", "prune=none", "distill=off", *overrides]
        )
    )
    results = base_dir / "results.json"
    base = json.loads(results.read_text()) if results.is_file() else {}
    if code != 0 or base.get("status") != "completed":
        reason = base.get("error") or f"exit {code}"
        raise BlockpruneError(f"study: the baseline job failed ({reason}); see {base_dir}. Nothing else was run.")
    model_dir = base["model_dir"]
    # a given baseline fixes the split: its test examples are the only unseen ones (blockprune.leakage)
    base_seed = ((base.get("config") or {}).get("data") or {}).get("seed")
    same_split = [f"data.seed={base_seed}"] if baseline and base_seed is not None else []
    sparsities = ",".join(str(s) for s in study["sparsities"])
    distill = ",".join(study["distill"])
    sweep_code = _run(
        [
            "-m",
            f"experiment={preset}",
            "prune=block",
            f"prune.sparsity={sparsities}",
            f"distill={distill}",
            f"init_from={model_dir}",
            f"hydra.sweep.dir={out / 'pruned'}",
            *study.get("pruned_overrides", []),
            *same_split,
            *overrides,
        ]
    )
    return sweep_code
