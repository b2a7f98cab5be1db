"""The dense teacher a sweep needs is fine-tuned once, cached by what defines it, shared by every job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

from blockprune.config import entry_script
from blockprune.teacher import is_finetuned_classifier, needs_teacher, teacher_command, teacher_key, teacher_spec
from helpers.jobs import TINY_CLI, make_cfg

AUTO = ["teacher.auto=true"]


def _key(tmp_path: Path, overrides: list[str]) -> str:
    return teacher_key(teacher_spec(make_cfg(tmp_path, AUTO + overrides)))


def test_the_teacher_hash_covers_what_defines_it_and_nothing_else(tmp_path):
    base = _key(tmp_path, [])
    # pruning, distillation, vocabulary, benchmark and output locations do not change the teacher
    assert (
        _key(
            tmp_path / "other",
            ["prune=block", "distill=on", "vocab.trim=true", "bench.repeats=2", "prune.scores_lr=0.1", "task_name=x"],
        )
        == base
    )
    # data, model, seed, trainer and module settings do
    for override in (
        "seed=7",
        "data.max_length=32",
        "model.net.hidden_size=64",
        "trainer.max_epochs=1",
        "module.lr=1e-4",
        "callbacks.model_checkpoint.monitor=val/loss",
    ):
        assert _key(tmp_path, [override]) != base, override


def test_the_hash_of_a_finished_teachers_resolved_config_is_its_folders(tmp_path):
    """A teacher job's results.json config (resolved, as main writes it) hashes like the job config it came from."""
    from blockprune.redact import redacted_container

    cfg = make_cfg(tmp_path, AUTO)
    assert teacher_key(teacher_spec(redacted_container(cfg))) == teacher_key(teacher_spec(cfg))


def test_which_jobs_need_a_teacher(tmp_path, e5_dir):
    assert needs_teacher(make_cfg(tmp_path, AUTO + ["distill=on"]))
    assert needs_teacher(make_cfg(tmp_path, AUTO + ["prune.sparsity=0.5"]))
    assert not needs_teacher(make_cfg(tmp_path, AUTO))  # the dense baseline is the teacher itself
    assert not needs_teacher(make_cfg(tmp_path, ["teacher.auto=false", "distill=on"]))
    assert not needs_teacher(make_cfg(tmp_path, AUTO + ["distill=on", f"init_from={e5_dir}"]))
    assert not needs_teacher(make_cfg(tmp_path, AUTO + ["distill=on", f"distill.teacher={tmp_path}"]))
    # e5-small-mr is an encoder without a classifier: it needs one too
    assert needs_teacher(make_cfg(tmp_path, AUTO + ["model=e5_small_mr", "distill=on"]))


def test_a_fine_tuned_classifier_is_told_from_a_bare_encoder(tmp_path, e5_dir):
    from transformers import BertConfig, BertForSequenceClassification

    assert not is_finetuned_classifier(None)
    assert not is_finetuned_classifier(str(e5_dir))
    small = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(BertConfig(**small, id2label={0: "sports", 1: "tech"})).save_pretrained(
        tmp_path / "a"
    )
    BertForSequenceClassification(BertConfig(**small)).save_pretrained(tmp_path / "b")  # LABEL_0, LABEL_1: no head yet
    assert is_finetuned_classifier(str(tmp_path / "a"))
    assert not is_finetuned_classifier(str(tmp_path / "b"))


def test_the_teacher_command_drops_the_jobs_pruning_and_outputs(tmp_path):
    make_cfg(tmp_path, ["distill=on", "prune.sparsity=0.5", "seed=3", "+prune.foo=1", "hydra.job.chdir=false"])
    cmd = teacher_command(tmp_path / "teachers" / "abc")
    task = HydraConfig.get().overrides.task
    assert cmd[:2] == [sys.executable, str(entry_script())]
    assert "seed=3" in cmd and "model=tiny" in cmd
    assert not [a for a in cmd if a in task and re.match(r"\+?(prune|distill|hydra\.)", a)]
    assert cmd[-1] == f"hydra.run.dir={tmp_path / 'teachers' / 'abc'}"
    assert {"prune=none", "distill=off", "init_from=null", "teacher.auto=false"} <= set(cmd)


# --- Real sweeps: the daily command on a fresh clone, the tiny model standing in for e5-small-mr.


def _sweep(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            "-m",
            *TINY_CLI,
            *AUTO,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )


def _check_sweep(tmp_path: Path, proc: subprocess.CompletedProcess, jobs: int) -> Path:
    assert proc.returncode == 0, proc.stderr[-4000:]
    teachers = [p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir()]
    assert len(teachers) == 1, teachers  # one teacher folder for the whole sweep
    teacher = teachers[0]
    done = json.loads((teacher / "results.json").read_text())
    assert done["status"] == "completed" and "pruning" not in done and done["config"]["distill"] in (None, {})
    model = Path(done["model_dir"])
    for n in range(jobs):
        results = json.loads((tmp_path / "sweep" / str(n) / "results.json").read_text())
        assert results["status"] == "completed", results.get("error")
        assert results["config"]["init_from"] == str(model)  # started from the teacher...
        assert results["config"]["distill"]["teacher"] == str(model)  # ...and distilled from it
        assert results["pruning"]["target_sparsity"] > 0
    log = proc.stdout + proc.stderr
    assert log.count("teacher: fine-tuning the dense teacher") == 1, log[-4000:]
    return teacher


@pytest.mark.slow
def test_the_daily_command_on_a_fresh_clone_fine_tunes_one_teacher_for_the_sweep(tmp_path):
    proc = _sweep(tmp_path, ["prune.sparsity=0.25,0.5,0.75", "distill=on"])
    teacher = _check_sweep(tmp_path, proc, jobs=3)
    log = proc.stdout + proc.stderr
    assert log.count("teacher: reusing") == 2 and str(teacher) in log
    # A second sweep with other pruning settings reuses it without training.
    (tmp_path / "sweep").rename(tmp_path / "first")
    again = _sweep(tmp_path, ["prune.sparsity=0.6", "distill=off,on"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "teacher: fine-tuning" not in again.stdout + again.stderr
    assert (again.stdout + again.stderr).count("teacher: reusing") == 2


@pytest.mark.slow
def test_parallel_jobs_wait_on_the_lock_instead_of_each_training_a_teacher(tmp_path):
    proc = _sweep(
        tmp_path,
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "prune.sparsity=0.25,0.5",
            "distill=on",
            "callbacks.last_checkpoint.every_n_minutes=0",
        ],
    )
    _check_sweep(tmp_path, proc, jobs=2)
    log = proc.stdout + proc.stderr
    assert "teacher: another job fine-tuned it meanwhile" in log, log[-4000:]


@pytest.mark.slow
def test_a_cross_validated_job_gets_a_cross_validated_teacher_fold_by_fold(tmp_path):
    """With data.cv_folds the teacher is a CV job too; fold k starts from (and distils from) its fold k."""
    proc = _sweep(tmp_path, ["data.cv_folds=2", "~data.limit.test", "prune.sparsity=0.5", "distill=on"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    (teacher,) = [p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir()]
    job = tmp_path / "sweep" / "0"
    for k in (0, 1):
        fold = json.loads((job / f"fold_{k}" / "results.json").read_text())
        assert fold["config"]["init_from"] == str(teacher / f"fold_{k}" / "model")
        assert fold["config"]["distill"]["teacher"] == str(teacher / f"fold_{k}" / "model")
    assert json.loads((job / "results.json").read_text())["status"] == "completed"
