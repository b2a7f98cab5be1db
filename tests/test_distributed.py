"""DDP on CPU (2 processes, gloo) inside a Hydra multirun: one folder and one results.json per
job, metrics over every test example exactly once, ranks that stay in step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from blockprune import load_model
from blockprune.config import entry_script, project_root
from blockprune.distributed import config_flags
from blockprune.evaluation import evaluate_texts
from blockprune.models import build_tiny_classifier
from helpers.jobs import SHC_LABELS

LABELS = SHC_LABELS

TINY = [
    "model=tiny",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "logger=default",
    "callbacks=no_carbon",
    "bench.repeats=2",
    "bench.warmup=1",
    "data.limit={train: 64, val: 31, test: 33}",
]  # odd sizes: a padding sampler would repeat an example


@pytest.mark.slow
def test_a_ddp_sweep_writes_one_folder_and_one_results_file_per_job_with_exact_metrics(tmp_path, e5_dir):
    """Two pruning + distillation jobs, each on 2 CPU processes, in one Hydra multirun."""
    sweep, cwd = tmp_path / "sweep", tmp_path / "cwd"
    cwd.mkdir()
    labels = {label: i for i, label in enumerate(LABELS)}
    build_tiny_classifier(str(e5_dir), len(labels), {i: k for k, i in labels.items()}, labels, seed=7).save_pretrained(
        tmp_path / "teacher"
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            "-m",
            *TINY,
            f"paths.cache_dir={tmp_path / 'cache'}",
            "prune=block",
            "prune.sparsity=0.25,0.5",
            "prune.attention_block=head",
            "distill=on",
            f"distill.teacher={tmp_path / 'teacher'}",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]  # no sweep per rank
    assert not list(cwd.iterdir()) and not (project_root() / "outputs" / "train_ddp_process_1").exists()
    for job, sparsity in (("0", 0.25), ("1", 0.5)):
        folder = sweep / job
        assert (folder / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job's folder
        assert len(list(folder.rglob("results.json"))) == 1 and len(list(folder.rglob("config.json"))) == 1
        assert len(list((folder / "wandb").glob("offline-run-*"))) == 1  # one W&B run, rank 0's
        assert "train/kd_loss_epoch" in (folder / "csv" / "metrics.csv").read_text().splitlines()[0]
        results = json.loads((folder / "results.json").read_text())
        assert results["status"] == "completed" and results["world_size"] == 2
        assert results["pruning"]["target_sparsity"] == sparsity
        assert results["compaction"]["max_abs_logit_diff"] <= 1e-4
        # The test accuracy reduced over both ranks equals one process evaluating the saved model on
        # the whole test split: each example counted once, and both ranks held the same weights
        # and masks (rank 0's are the ones saved).
        cfg = OmegaConf.create(results["config"])
        datamodule = instantiate(cfg.data, output_dir=None)
        datamodule.setup("test")
        texts, labels = datamodule.texts("test"), datamodule.labels("test")
        assert len(texts) == 33
        model = load_model(results["model_dir"])
        single = evaluate_texts(
            model, AutoTokenizer.from_pretrained(results["model_dir"]), texts, labels, datamodule.max_length
        )
        assert results["metrics_compacted"]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)


def test_ranks_run_the_job_command_with_the_config_flags_kept():
    argv = ["-m", "--config-name", "other", "-cp=/conf", "prune.sparsity=0.5,0.75", "--config-dir", "/extra"]
    assert config_flags(argv) == ["--config-name", "other", "-cp=/conf", "--config-dir", "/extra"]


@pytest.mark.slow
def test_a_ddp_job_failing_during_training_does_not_end_the_next_job_of_the_sweep(tmp_path):
    """Job 0 fails on both ranks mid-fit (an EarlyStopping on a metric that does not exist);
    Lightning's process observer must not end job 1 for it."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            "-m",
            *TINY,
            "logger=csv",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.stop.monitor=nope,val/acc",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # FailedJobsExit, not a kill (137)
    first, second = (json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1"))
    assert first["status"] == "failed" and "nope" in first["error"]
    assert second["status"] == "completed" and second["world_size"] == 2
