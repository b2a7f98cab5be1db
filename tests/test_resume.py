"""Resume after SIGKILL and same-seed determinism, with real tiny jobs run as `python train.py`.

One tiny pruning + distillation job (3 epochs of 8 steps, heads pruned to 50 % by step 17) is
run three ways:
uninterrupted; a second time (same seed: must be identical); and killed twice, at step 12
(mid-epoch, mid-schedule) and at step 16 (an epoch end), each time restarted with the same
command and run dir. The resumed job must end exactly where the uninterrupted one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blockprune.config import entry_script
from blockprune.distill import Distillation
from blockprune.errors import ConfigError
from blockprune.models import build_tiny_classifier
from blockprune.resume import find_checkpoint
from helpers.jobs import SHC_LABELS
from helpers.paths import E5_DIR

TESTS = Path(__file__).resolve().parent
STEPS_PER_EPOCH, EPOCHS = 8, 3
JOB = [
    "model=tiny",
    "trainer=cpu",
    f"trainer.max_epochs={EPOCHS}",
    "logger=csv",
    "callbacks=no_carbon",
    "bench.enabled=false",
    "data.limit={train: 64, val: 32, test: 32}",
    "data.batch_size=8",
    "data.num_workers=0",
    "module.lr=1e-3",
    "prune=block",
    "prune.sparsity=0.5",
    "prune.attention_block=head",
    "callbacks.last_checkpoint.every_n_train_steps=3",
    "callbacks.last_checkpoint.every_n_minutes=0",
]


LABELS = SHC_LABELS


def _start(run_dir: Path, root: Path, job: list[str] = JOB) -> subprocess.Popen:
    pace = f"+callbacks.pace={{_target_: helpers.pacing.Pace, progress_file: '{run_dir / 'progress'}', seconds: 0.15}}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }  # the same thread count in every job (it changes float sums); fast on a busy machine
    cmd = [
        sys.executable,
        str(entry_script()),
        *job,
        pace,
        "distill=on",
        f"distill.teacher={root / 'teacher'}",
        f"paths.cache_dir={root / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd,
        cwd=run_dir.parent,
        env=env,
        stdout=open(run_dir.parent / f"{run_dir.name}.log", "a"),
        stderr=subprocess.STDOUT,
    )


def _finish(proc: subprocess.Popen, run_dir: Path) -> dict:
    assert proc.wait(timeout=300) == 0, (run_dir.parent / f"{run_dir.name}.log").read_text()[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def _kill_at(proc: subprocess.Popen, run_dir: Path, step: int) -> int:
    """SIGKILL the job once it has started the batch after optimiser step ``step``; returns the
    step of the last.ckpt it leaves behind."""
    progress = run_dir / "progress"
    deadline = time.monotonic() + 300
    while not (progress.is_file() and int(progress.read_text() or -1) >= step):
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists()
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


def _same(a: dict, b: dict, a_dir: Path, b_dir: Path) -> None:
    """Everything training decides is identical: metrics, sparsity, compaction, best epoch, weights."""
    for key in ("metrics", "metrics_compacted", "pruning", "compaction", "params", "flops_per_token"):
        assert a[key] == b[key], key
    assert Path(a["checkpoint"]).name == Path(b["checkpoint"]).name
    wa, wb = load_file(a_dir / "model" / "model.safetensors"), load_file(b_dir / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _csv(path: Path) -> tuple[list[str], set[str]]:
    import csv

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(rows[0]), {r["step"] for r in rows}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, e5_dir):
    """A (random) teacher, and the uninterrupted job started in the background while the tests run their own."""
    root = tmp_path_factory.mktemp("resume")
    labels = {label: i for i, label in enumerate(LABELS)}
    teacher = build_tiny_classifier(str(e5_dir), len(labels), {i: label for label, i in labels.items()}, labels, seed=7)
    teacher.save_pretrained(root / "teacher")
    ref = root / "reference"
    return root, ref, _start(ref, root)


def test_a_killed_job_resumes_exactly_where_it_stopped(jobs):
    root, ref, ref_proc = jobs
    run = root / "killed"
    first = _kill_at(_start(run, root), run, 12)
    assert 0 < first < 16 and first % STEPS_PER_EPOCH, first  # mid-epoch 2, while the sparsity still rises
    second = _kill_at(_start(run, root), run, 16)
    assert second == 16  # the end of epoch 2, after its validation
    resumed = _finish(_start(run, root), run)
    reference = _finish(ref_proc, ref)

    _same(reference, resumed, ref, run)
    assert resumed["pruning"]["sparsity_encoder_linear"] == pytest.approx(0.5)
    assert resumed["compaction"]["heads_left"] == 4
    log = (root / "killed.log").read_text()
    assert log.count("resuming from") == 2 and "not resumable" not in log and "differs from the checkpoint" not in log
    ref_csv, run_csv = (_csv(d / "csv" / "metrics.csv") for d in (ref, run))
    assert ref_csv[0] == run_csv[0] and ref_csv[1] <= run_csv[1]  # same columns; no step of the log lost


@pytest.mark.slow
def test_a_killed_e5_job_resumes_to_the_same_results(jobs):
    """The real 12-layer e5-small-mr, killed mid-epoch while the sparsity rises: bit-identical too."""
    root = jobs[0]
    e5 = [o for o in JOB if not o.startswith("model=")] + ["model=e5_small_mr"]
    ref, run = root / "e5_reference", root / "e5_killed"
    ref_proc = _start(ref, root, e5)
    first = _kill_at(_start(run, root, e5), run, 12)
    assert 0 < first < 16 and first % STEPS_PER_EPOCH, first
    resumed = _finish(_start(run, root, e5), run)
    reference = _finish(ref_proc, ref)
    _same(reference, resumed, ref, run)
    assert resumed["metrics_compacted"]["test/acc"] == reference["metrics_compacted"]["test/acc"]


def test_the_same_seed_gives_the_same_results(jobs):
    root, ref, ref_proc = jobs
    again = root / "again"
    _same(_finish(ref_proc, ref), _finish(_start(again, root), again), ref, again)


def test_resume_settings(tmp_path):
    assert find_checkpoint("auto", tmp_path) is None and find_checkpoint(False, tmp_path) is None
    with pytest.raises(ConfigError, match="hydra.run.dir"):
        find_checkpoint(True, tmp_path)
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert find_checkpoint("auto", tmp_path) == find_checkpoint(True, tmp_path) == tmp_path / "last.ckpt"
    assert find_checkpoint(False, tmp_path) is None
    assert find_checkpoint(str(tmp_path / "last.ckpt"), None) == tmp_path / "last.ckpt"
    with pytest.raises(ConfigError, match="no such checkpoint"):
        find_checkpoint(str(tmp_path / "other.ckpt"), tmp_path)
    job = tmp_path / "job"  # resume=<the killed job's folder>
    (job / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        find_checkpoint(str(job), None)
    (job / "checkpoints" / "last.ckpt").write_bytes(b"")
    last = job / "checkpoints" / "last.ckpt"
    assert find_checkpoint(str(job), None) == find_checkpoint(str(job / "checkpoints"), None) == last


def test_a_checkpoint_distilled_from_another_teacher_is_refused(jobs):
    root = jobs[0]
    labels = {label: i for i, label in enumerate(LABELS)}
    student = build_tiny_classifier(str(E5_DIR), len(labels), {i: k for k, i in labels.items()}, labels)
    kd = Distillation(str(root / "teacher"))
    kd.load_teacher(student)
    saved = kd.state_dict()
    kd.load_state_dict(saved)  # the same teacher: fine
    with pytest.raises(ConfigError, match="different weights"):
        kd.load_state_dict({**saved, "fingerprint": saved["fingerprint"] * 1.001})
