"""Which checkpoint a small-data pruned job should keep: re-test every fold's last checkpoint.

A CV job keeps each fold's checkpoint by the preset's monitor among the held epochs (about 210
validation headlines a fold on SHC). This script tests each fold's ``checkpoints/last.ckpt``
(the end of the schedule) on that fold's test split with the job's own config, and pools the
folds two ways: ``last`` (every fold's last checkpoint) and ``lowest_val_loss`` (each fold's
held epoch of lowest validation loss, from its metrics.csv: the rule of the table1_cpu preset
since commit 72b6abb; its predictions are those of the last or of the kept checkpoint, whichever
is that epoch). Each is paired with the baseline job and with the job's own pooled row.

    PYTHONPATH=src .venv/bin/python docs/results/table1_cpu_cv/last_checkpoint.py \
        <pruned CV job> <baseline CV job> <out.json>
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from blockprune.components import build, build_pruning
from blockprune.crossval import pool_predictions
from blockprune.evaluation import compare_to_baseline, record_interval, record_metrics, test_predictions
from blockprune.main import _build_model
from blockprune.module import ClassifierModule
from blockprune.pruning.schedule import CubicSchedule


def test_last_checkpoint(fold: Path) -> dict:
    """The fold's masked model at ``last.ckpt``: validation and test metrics, test predictions."""
    cfg = OmegaConf.create(json.loads((fold / "results.json").read_text())["config"])
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = _build_model(cfg, datamodule)
    build_pruning(cfg.prune).patch(model)
    module = ClassifierModule(model, **cfg.module, distillation=None)
    state = torch.load(fold / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    missing, _ = module.load_state_dict(state["state_dict"], strict=False)  # the teacher is not in the module
    if missing:
        raise RuntimeError(f"{fold}/checkpoints/last.ckpt lacks {missing[:3]}")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {
        "epoch": state.get("epoch"),
        "step": state.get("global_step"),
        "val": val,
        "test": test,
        "predictions": test_predictions(datamodule, module.test_predictions),
    }


def lowest_val_loss_epoch(fold: Path, last: dict) -> int:
    """The held epoch (validated at or after the hold's first step) of lowest validation loss."""
    prune = json.loads((fold / "results.json").read_text())["config"]["prune"]
    hold_start = CubicSchedule(prune["sparsity"], last["step"], prune["warmup"], prune["hold"]).hold_start
    with open(fold / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    rows = rows[: last["epoch"] + 1]  # the fit's epochs; a last row is the kept checkpoint's re-validation
    held = [r for r in rows if int(r["step"]) >= hold_start - 1]  # validated at the end of a held epoch
    return int(min(held, key=lambda r: float(r["val/loss"]))["epoch"])


def fold_record(fold: Path, last: dict, epoch: int) -> dict:
    """The test predictions of ``fold``'s checkpoint of ``epoch``: its last or its kept one."""
    if epoch == last["epoch"]:
        return last["predictions"]
    kept = json.loads((fold / "results.json").read_text())
    if Path(kept["checkpoint"]).name != f"epoch_{epoch:02d}.ckpt":
        raise SystemExit(f"{fold}: epoch {epoch} is neither the last nor the kept checkpoint; not tested")
    return kept["predictions"]


def summarise(record: dict, baseline: dict, kept: dict, classes: int) -> dict:
    return {
        "acc": 100 * record_metrics(record, num_classes=classes)["test/acc"],
        "interval": record_interval([record], num_classes=classes),
        "vs_baseline": compare_to_baseline([baseline["predictions"]], [record], num_classes=classes),
        "vs_kept_checkpoint": compare_to_baseline([kept["predictions"]], [record], num_classes=classes),
    }


def main(job: Path, baseline_job: Path, out: Path) -> None:
    torch.set_num_threads(1)  # beside a running study
    fold_dirs = sorted(job.glob("fold_*"))
    last = {f.name: test_last_checkpoint(f) for f in fold_dirs}
    epochs = {f.name: lowest_val_loss_epoch(f, last[f.name]) for f in fold_dirs}
    records = {
        "last": pool_predictions([last[f.name]["predictions"] for f in fold_dirs]),
        "lowest_val_loss": pool_predictions([fold_record(f, last[f.name], epochs[f.name]) for f in fold_dirs]),
    }
    kept = json.loads((job / "results.json").read_text())
    baseline = json.loads((baseline_job / "results.json").read_text())
    classes = len(json.loads((job / "fold_0" / "results.json").read_text())["data"]["label2id"])
    summary = {
        "job": str(job),
        "kept_checkpoints": {f.name: json.loads((f / "results.json").read_text())["checkpoint"] for f in fold_dirs},
        "lowest_val_loss_epochs": epochs,
        **{name: summarise(record, baseline, kept, classes) for name, record in records.items()},
    }
    per_fold = {k: {key: v for key, v in f.items() if key != "predictions"} for k, f in last.items()}
    out.write_text(json.dumps({"summary": summary, "last_checkpoints": per_fold, "predictions": records}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
