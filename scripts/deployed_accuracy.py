"""Deployed accuracy and speed of a study's models, paired with the dense baseline example by example.

    .venv/bin/python scripts/deployed_accuracy.py outputs/table1/<study> --runtimes onnx-int8 openvino \
        --out docs/results/<study>/deployed.json

For the baseline (``<study>/baseline``, or the ``--baseline`` its study.json names) and every pruned
job of the study (``<study>/pruned/*``; for a cross-validated job, each fold's model on its own test
fold, pooled as the job pools them) it
rebuilds the data module from the job's own config (same cleaning, same test split), copies
the saved model to a temporary folder, exports it to each runtime (``blockprune.deploy``; int8
activations calibrated on the same job's training split), and
records per runtime: test accuracy, the paired difference to the dense baseline in PyTorch float32
(paired bootstrap interval, McNemar's p: ``blockprune.evaluation.compare_to_baseline``) and the
speed-ups over the dense model in PyTorch float32, all runtimes of the job alternated in one
process (``blockprune.deploy.deploy_job``). The question it answers is issue 14's goal: is the
deployed pruned model faster, and how far below the dense model is it, with an interval.

``--stored`` reads what the jobs' ``deploy`` sections already hold instead (a study run with
``deploy=cpu``): each runtime's re-test predictions (pooled over the folds of a cross-validated job)
paired with the baseline's PyTorch float32 ones, and the speed-ups measured in the job (fold 0's, for
cross-validation); nothing is exported or timed again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from blockprune.atomic import write_json
from blockprune.components import build
from blockprune.deploy import FILES, deploy_job, pool_deploy
from blockprune.deploy.measure import calibration_sample
from blockprune.evaluation import compare_to_baseline, prediction_record, record_interval, record_metrics
from blockprune.models import load_model, load_tokenizer
from blockprune.report import with_study_baselines


def job_data(job: Path):
    """The job's data module, rebuilt from its results.json config (its test split, cleaned the same way)."""
    results = json.loads((job / "results.json").read_text(encoding="utf-8"))
    cfg = OmegaConf.create(results["config"])
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    return results, datamodule


def row_identity(results: dict) -> tuple[str, dict]:
    """The row's name in the output (``baseline``, ``50% pruning + KD``) and its sparsity / distillation."""
    prune, distill = results["config"].get("prune") or {}, results["config"].get("distill")
    name = f"{prune.get('sparsity', 0):.0%} pruning" + (" + KD" if distill else "")
    return "baseline" if not prune.get("sparsity") else name, {
        "sparsity": prune.get("sparsity", 0.0),
        "distill": bool(distill),
    }


def paired_runtime(deployed: dict, ids: list, labels: list, base_record: dict, num_classes: int) -> dict:
    """One runtime's re-test: accuracy with its interval, paired with the dense model in PyTorch fp32."""
    pred = prediction_record(ids, labels, deployed["predictions"])  # its re-test, in test-split order
    return {
        "accuracy": 100 * record_metrics(pred, num_classes)["test/acc"],
        "interval": record_interval([pred], num_classes),
        "vs_dense_torch_fp32": compare_to_baseline([base_record], [pred], num_classes),
        "precision": deployed.get("precision"),
        "verified": deployed["verified"],
        "agreement_with_own_torch_fp32": deployed["agreement"],
        "speedup_vs_dense_torch": deployed["speedup_vs_dense_torch"],
        "speedup_vs_dense_same_runtime": deployed["speedup_vs_dense_same_runtime"],
        "latency_ms": deployed["latency_ms"],
    }


def stored_rows(jobs: list[Path]) -> dict:
    """Rows from the deploy sections the jobs wrote (``--stored``), paired with the baseline."""
    loaded = [json.loads((job / "results.json").read_text(encoding="utf-8")) for job in jobs]
    base_record = loaded[0]["predictions"]
    num_classes = len(set(base_record["target"]))  # every label occurs in a cross-validated test record
    rows = {}
    for job, results in zip(jobs, loaded):
        record, deploy = results["predictions"], results.get("deploy")
        if not deploy:
            raise SystemExit(f"{job}: results.json has no deploy section; run the study with deploy=cpu")
        if sorted(record["id"]) != sorted(base_record["id"]):
            raise SystemExit(f"{job}: its test examples differ from the baseline's; not comparable")
        name, identity = row_identity(results)
        rows[name] = {
            "job": str(job),
            **identity,
            "runtimes": {
                runtime: paired_runtime(deployed, record["id"], record["target"], base_record, num_classes)
                for runtime, deployed in deploy["runtimes"].items()
            },
            "seq_len": deploy["seq_len"],
            "folds": deploy.get("folds", 1),
            "environment": deploy["environment"],
        }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--runtimes", nargs="+", default=["onnx-int8", "openvino"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, help="threads per runtime (default: torch's)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--calibration-texts", type=int, default=256, help="training texts calibrating openvino-int8")
    parser.add_argument("--stored", action="store_true", help="pair the jobs' own deploy sections; export nothing")
    args = parser.parse_args()
    start, load_before = time.time(), os.getloadavg()

    jobs = study_jobs(args.study)
    base_job = jobs[0]
    if args.stored:
        return write(args, stored_rows(jobs), start, load_before)
    base_units = model_units(base_job)
    base_record = json.loads((base_job / "results.json").read_text(encoding="utf-8"))["predictions"]
    rows = {}
    for job in jobs:
        units = model_units(job)
        if len(units) != len(base_units):
            raise SystemExit(f"{job}: {len(units)} model(s), the baseline {len(base_units)}; not comparable")
        sections, ids, labels = [], [], []
        for k, (unit, base_unit) in enumerate(zip(units, base_units)):
            print(f"{job.name} {unit.name}: exporting and re-testing {args.runtimes}", file=sys.stderr)
            results, dm = job_data(unit)
            timed = k == 0  # cross-validation reports fold 0's speed, as the job does
            dense = None
            if timed and job != base_job:  # the pruned fold-0 model is timed beside the dense fold-0 one
                dense = load_model(json.loads((base_unit / "results.json").read_text())["model_dir"])
            sections.append(deploy_unit(args, results, dm, dense, timed))
            ids += dm.example_ids("test")
            labels += dm.labels("test")
            num_classes = dm.num_labels
        if sorted(ids) != sorted(base_record["id"]):
            raise SystemExit(f"{job}: its test examples differ from the baseline's; not comparable")
        record = pool_deploy(sections) if len(sections) > 1 else sections[0]
        name, identity = row_identity(json.loads((job / "results.json").read_text(encoding="utf-8")))
        rows[name] = {
            "job": str(job),
            **identity,
            "runtimes": {
                runtime: paired_runtime(deployed, ids, labels, base_record, num_classes)
                for runtime, deployed in record["runtimes"].items()
            },
            "seq_len": record["seq_len"],
            "folds": len(sections),
            "environment": record["environment"],
        }
    return write(args, rows, start, load_before, baseline_test_examples=len(base_record["id"]))


def study_jobs(study: Path) -> list[Path]:
    """The baseline job first (``<study>/baseline``, or the ``--baseline`` its study.json names), then
    the pruned jobs that finished."""
    named = with_study_baselines([study])[1:]  # only baselines outside the study folder
    if (study / "baseline").is_dir():
        base = study / "baseline"
    elif len(named) == 1:
        base = named[0]
    else:
        raise SystemExit(f"{study}: no baseline/ folder and study.json names {len(named)} outside it; need one")
    return [base, *sorted(p.parent for p in (study / "pruned").glob("*/results.json"))]


def model_units(job: Path) -> list[Path]:
    """The folders holding one trained model each: a cross-validated job's folds, else the job."""
    folds = sorted(job.glob("fold_*/results.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    return [p.parent for p in folds] or [job]


def deploy_unit(args: argparse.Namespace, results: dict, dm, dense, timed: bool) -> dict:
    """One model exported afresh to ``args.runtimes`` in a temporary copy, re-tested on its own test
    split, int8 calibrated on its own training split; timed beside ``dense`` (None: itself) with
    ``args.repeats`` when ``timed``, else once (its speed is not reported)."""
    with tempfile.TemporaryDirectory(prefix="deployed-") as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(results["model_dir"], folder)
        for stale in (*FILES.values(), "openvino_model.bin", "openvino_model_int8.bin", "deploy.json"):
            (folder / stale).unlink(missing_ok=True)  # exported afresh below
        return deploy_job(
            load_model(folder).eval(),
            load_tokenizer(str(folder)),
            folder,
            dense,
            dm.texts("test"),
            dm.labels("test"),
            args.runtimes,
            seq_len=int(results["seq_len"]),
            max_length=int(dm.max_length),
            batch_sizes=args.batch_sizes,
            repeats=args.repeats if timed else 1,
            warmup=2 if timed else 1,
            threads=args.threads,
            calibration_texts=calibration_sample(dm.texts("train"), args.calibration_texts),
        )


def write(args: argparse.Namespace, rows: dict, start: float, load_before: tuple, **extra) -> int:
    """Print each row's runtimes and write the JSON (atomic, like every JSON artefact of the project)."""
    for name, row in rows.items():
        for runtime, got in row["runtimes"].items():
            paired = got["vs_dense_torch_fp32"]
            print(
                f"{name:40s} {runtime:10s} acc {got['accuracy']:.2f} vs dense {paired['diff_acc']:+.2f} "
                f"[{paired['diff_acc_low']:+.2f}, {paired['diff_acc_high']:+.2f}] "
                + " ".join(f"{k} {v:.2f}x" for k, v in got["speedup_vs_dense_torch"].items()),
                file=sys.stderr,
            )
    out = {
        "schema": "blockprune.deployed_accuracy/1",
        "command": "python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "study": str(args.study),
        **extra,
        "note": "accuracy in points; vs_dense_torch_fp32 pairs each runtime's test predictions with the dense "
        "baseline's (PyTorch float32) example by example; speed-ups from runs alternated in one process",
        "loadavg": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
        "wall_s": round(time.time() - start, 1),
    }
    write_json(args.out, out)
    print(f"wrote {args.out} in {out['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
