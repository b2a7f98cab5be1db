"""Failure behaviour of real jobs: a bad input stops a run cleanly; a failed job never takes a sweep down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from blockprune.main import PROJECT_ROOT
from blockprune.report import build_table

TINY = ["model=tiny", "trainer=cpu", "trainer.max_epochs=1", "logger=csv", "callbacks=no_carbon",
        "bench.repeats=2", "bench.warmup=1", "data.limit={train: 64, val: 32, test: 32}"]


def _train(args: list[str], tmp_path: Path, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *flags, *TINY, f"paths.cache_dir={tmp_path / 'cache'}", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )


def test_bad_input_exits_non_zero_with_the_fix_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _train(["data.text_column=Headline", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 1
    log = proc.stdout + proc.stderr
    assert "Headline" in log and "SHC_Valid.csv" in log and "data.text_column" in log
    assert "Traceback" not in log
    assert not (out / "results.json").exists() and not (out / "model").exists()


def test_one_failed_job_does_not_take_the_sweep_down(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train(["prune=block", "prune.sparsity=0.5,1.5", f"hydra.sweep.dir={sweep}"], tmp_path, flags=("-m",))
    assert proc.returncode != 0  # the sweep reports the failure at the end
    good = json.loads((sweep / "0" / "results.json").read_text())
    bad = json.loads((sweep / "1" / "results.json").read_text())
    assert good["status"] == "completed" and (sweep / "0" / "model" / "model.safetensors").is_file()
    assert bad["status"] == "failed" and "prune.sparsity=1.5" in bad["error"]
    table = build_table([sweep])
    assert list(table["status"]) == ["completed", "failed"]
