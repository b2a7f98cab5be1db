"""W&B runs are named after their job folder (unique across a study), one group per sweep or study."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from blockprune.config import entry_script
from blockprune.run_names import run_group, run_name
from helpers.jobs import TINY_CLI, make_cfg


def test_names_are_unique_across_a_study_and_its_runs_share_one_group(tmp_path):
    outputs = tmp_path / "outputs"
    study = outputs / "table1" / "2026-12-02_10-00-00"
    jobs = [study / "baseline", *(study / "pruned" / str(n) for n in range(6)), study / "report"]
    names = [run_name(j, outputs) for j in jobs]
    assert len(set(names)) == len(jobs)
    assert names[:2] == ["table1/2026-12-02_10-00-00/baseline", "table1/2026-12-02_10-00-00/pruned/0"]
    assert {run_group(j, outputs) for j in jobs} == {"table1/2026-12-02_10-00-00"}
    # two daily sweeps: one group each, and a single run is a group of its own
    sweeps = [outputs / "train" / f"multirun_2026-12-02_1{h}-00-00" / str(n) for h in (0, 1) for n in range(3)]
    assert len({run_name(j, outputs) for j in sweeps}) == 6
    assert {run_group(j, outputs) for j in sweeps} == {
        "train/multirun_2026-12-02_10-00-00",
        "train/multirun_2026-12-02_11-00-00",
    }
    # outside the outputs folder: the sweep folder is the group
    assert run_group(tmp_path / "elsewhere" / "sweep" / "1", outputs).endswith("elsewhere/sweep")


def test_the_logger_config_resolves_name_group_and_job_type(tmp_path):
    cfg = make_cfg(tmp_path, ["logger=wandb", "prune.sparsity=0.5", f"paths.log_dir={tmp_path.parent}"])
    wandb = cfg.logger.wandb
    assert wandb.name == tmp_path.name and wandb.job_type == "pruned"
    assert make_cfg(tmp_path, ["logger=wandb"]).logger.wandb.job_type == "baseline"
    teacher = make_cfg(tmp_path / "cache" / "teachers" / "0123abcd", ["logger=wandb"])
    teacher.paths.cache_dir = str(tmp_path / "cache")  # a job folder in the teacher cache is a teacher
    assert teacher.logger.wandb.job_type == "teacher"


def _wandb_run_record(run_dir: Path):
    """The run record (name, group, job type) of an offline W&B run, read from its .wandb log
    (LevelDB-style 32 KiB blocks of CRC/length/type-framed records, as W&B writes them)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("*.wandb")).read_bytes()
    pos, pending, block = 7, b"", 32768  # after the 7-byte ":W&B" header
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "run":
                return record.run
    raise AssertionError(f"no run record in {run_dir}")


@pytest.mark.slow
def test_a_real_sweep_names_each_wandb_run_after_its_job_folder(tmp_path):
    outputs = tmp_path / "outputs"
    proc = subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            "-m",
            *TINY_CLI,
            "logger=wandb",
            f"paths.log_dir={outputs}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "prune.sparsity=0,0.5",
            "bench.enabled=false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (outputs / "train").glob("multirun_*")
    runs = [_wandb_run_record(next((sweep / str(n) / "wandb").glob("offline-run-*"))) for n in (0, 1)]
    group = f"train/{sweep.name}"
    assert [r.display_name for r in runs] == [f"{group}/0", f"{group}/1"]
    assert [r.run_group for r in runs] == [group, group]
    assert [r.job_type for r in runs] == ["baseline", "pruned"]


def test_the_tensorboard_logger_option_writes_event_files_into_the_job_folder(tmp_path):
    from hydra.utils import instantiate

    cfg = make_cfg(tmp_path, ["logger=[csv,tensorboard]"])
    loggers = {name: instantiate(node) for name, node in cfg.logger.items()}
    assert set(loggers) == {"csv", "tensorboard"}
    loggers["tensorboard"].log_metrics({"val/acc": 0.5}, step=1)
    loggers["tensorboard"].finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
