"""Sweeps through Hydra's launcher plugins (docs/cluster.md): the jobs run in other processes,
yet every job folder, the failed-jobs exit code and the study's report stay as with the basic launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from blockprune.config import CONFIG_DIR, entry_script
from blockprune.errors import BlockpruneError
from blockprune.report import build_table
from blockprune.study import run_study
from helpers.jobs import TINY_CLI as TINY

LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One token cache for the module: each test tokenises the data once less."""
    return f"paths.cache_dir={tmp_path_factory.mktemp('cache')}"


def _sweep(args: list[str], tmp_path: Path, cache: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(entry_script()), "-m", *TINY, cache, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )


def _launcher_of(job: Path) -> str:
    """The launcher Hydra recorded for a job (so a test cannot pass on the basic launcher)."""
    return OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices["hydra/launcher"]


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_sweep_through_a_launcher_leaves_every_job_folder_the_report_reads(launcher, tmp_path, cache):
    sweep = tmp_path / "sweep"
    proc = _sweep(
        [*LAUNCHERS[launcher], "prune=block", "prune.sparsity=0.25,0.5", f"hydra.sweep.dir={sweep}"], tmp_path, cache
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = build_table([sweep])
    assert list(table["row"]) == ["25% pruning", "50% pruning"]
    assert (table["status"] == "completed").all()
    assert [_launcher_of(sweep / n) for n in ("0", "1")] == [launcher] * 2
    if launcher == "submitit_local":  # submitit's pickles and each job's stdout/stderr stay inside the sweep
        assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2


def test_a_failed_job_in_a_joblib_sweep_fails_the_command_after_the_others_finished(tmp_path, cache):
    sweep = tmp_path / "sweep"
    proc = _sweep(
        [*LAUNCHERS["joblib"], "prune=block", "prune.sparsity=0.5,1.5", f"hydra.sweep.dir={sweep}"], tmp_path, cache
    )
    assert proc.returncode == 1  # blockprune.failure.FailedJobsExit, in the launching process
    assert "1 job(s) failed" in proc.stdout + proc.stderr
    assert json.loads((sweep / "0" / "results.json").read_text())["status"] == "completed"
    assert json.loads((sweep / "1" / "results.json").read_text())["status"] == "failed"
    assert _launcher_of(sweep / "0") == "joblib"


def _launcher_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra.launcher


def test_the_slurm_preset_and_the_plugins_submitit_slurm_compose():
    preset = _launcher_config(["hydra/launcher=slurm"])
    assert preset._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (preset.partition, preset.gpus_per_node, preset.tasks_per_node) == ("gpu", 1, 1)
    assert (preset.timeout_min, preset.array_parallelism, preset.cpus_per_task, preset.mem_gb) == (240, 8, 8, 32)
    assert OmegaConf.to_container(preset)["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    assert preset.name == "train"  # ${task_name}, not the plugin's "main"
    edited = _launcher_config(["hydra/launcher=slurm", "hydra.launcher.partition=a100", "hydra.launcher.qos=high"])
    assert (edited.partition, edited.qos, edited.timeout_min) == ("a100", "high", 240)
    plugin = _launcher_config(
        [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.tasks_per_node=2",
        ]
    )
    assert (plugin.partition, plugin.gpus_per_node, plugin.tasks_per_node) == ("gpu", 2, 2)
    assert (plugin.timeout_min, plugin.array_parallelism) == (60, 256)  # the plugin's own defaults


@pytest.mark.slow
def test_the_slurm_preset_runs_a_sweep_as_one_job_array_on_a_stand_in_slurm(tmp_path, cache):
    """tests/fake_slurm/ stands in for sbatch/srun/sacct/scontrol: submitit writes and submits its
    real sbatch script, the stand-in runs the array tasks here with SLURM's variables set."""
    env = {**os.environ, "PATH": f"{Path(__file__).parent / 'fake_slurm'}{os.pathsep}{os.environ['PATH']}"}
    sweep = tmp_path / "sweep"
    proc = _sweep(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=debug",
            "prune=block",
            "prune.sparsity=0.25,0.5",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        cache,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    for flag in (
        "array=0-1%2",
        "partition=debug",
        "gpus-per-node=1",
        "ntasks-per-node=1",
        "cpus-per-task=8",
        "mem=32GB",
        "time=240",
        "job-name=train",
    ):
        assert f"#SBATCH --{flag}\n" in script
    assert (build_table([sweep])["status"] == "completed").all()
    assert [_launcher_of(sweep / n) for n in ("0", "1")] == ["slurm"] * 2
    assert "SLURM auto-requeueing enabled" in (next(sweep.glob(".submitit/*_0/*_0_0_log.err")).read_text())


STUDY = ["logger=csv", "callbacks=no_carbon", "trainer.max_epochs=1", "study.sparsities=[0.5]", *LAUNCHERS["joblib"]]


def test_the_study_trains_its_baseline_through_the_launcher_into_the_baseline_folder(tmp_path, cache):
    code = run_study("table1_tiny", tmp_path, [cache, *STUDY])
    assert code == 0
    base = tmp_path / "baseline"
    assert _launcher_of(base) == "joblib" and (base / "multirun.yaml").is_file()  # a one-job multirun
    assert json.loads((base / "results.json").read_text())["model_dir"] == str(base / "model")
    table = build_table([tmp_path])
    assert list(table["row"]) == ["baseline", "50% pruning", "50% + KD"]
    assert (table["status"] == "completed").all()
    assert [Path(d).name for d in table["job_dir"]] == ["baseline", "0", "1"]


def test_a_failed_baseline_through_a_launcher_stops_the_study(tmp_path, cache):
    """A failed multirun job writes results.json (status failed) and FailedJobsExit looks only in the
    sweep folder's subfolders, so the exit code alone would not tell: the study reads the status."""
    with pytest.raises(BlockpruneError, match=r"baseline job failed \(\w+Error: "):
        run_study("table1_tiny", tmp_path, [cache, *STUDY, "module.lr=-1"])
    assert json.loads((tmp_path / "baseline" / "results.json").read_text())["status"] == "failed"
    assert not (tmp_path / "pruned").exists()
