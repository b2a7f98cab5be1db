"""Intervals and paired tests against hand-computed cases and torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from blockprune.evaluation import (
    bootstrap_interval,
    compare_to_baseline,
    mcnemar_exact,
    mean_std,
    paired_bootstrap,
    prediction_record,
    record_metrics,
)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 5, 2 * (1 + 6) / 2**6),  # 0.21875
        (0, 10, 2 / 2**10),
        (3, 3, 1.0),
        (0, 0, 1.0),
        (2, 8, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
    ],
)
def test_mcnemar_exact_by_hand(b, c, p):
    base = [True] * b + [False] * c + [True] * 7 + [False] * 4  # concordant pairs do not count
    row = [False] * b + [True] * c + [True] * 7 + [False] * 4
    out = mcnemar_exact(base, row)
    assert (out["base_only"], out["row_only"]) == (b, c)
    assert out["p"] == pytest.approx(p, rel=1e-12)


def test_mcnemar_large_counts_do_not_overflow():
    out = mcnemar_exact([True] * 1500 + [False] * 1500, [False] * 1500 + [True] * 1500)
    assert out["p"] == pytest.approx(1.0)
    out = mcnemar_exact([True] * 1200 + [False] * 100, [False] * 1200 + [True] * 100)
    assert 0 <= out["p"] < 1e-200


def test_point_estimates_equal_torchmetrics():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, target, rng.integers(0, 4, 300))  # class 4 never predicted
    iv = bootstrap_interval(target, pred, num_classes=6, n_boot=50)  # class 5 in neither: not counted
    t, p = torch.tensor(target), torch.tensor(pred)
    assert iv["acc"]["estimate"] == pytest.approx(float(multiclass_accuracy(p, t, num_classes=6, average="micro")))
    assert iv["f1_macro"]["estimate"] == pytest.approx(float(multiclass_f1_score(p, t, num_classes=6, average="macro")))
    assert record_metrics(prediction_record(range(300), target, pred))["test/acc"] == pytest.approx(
        iv["acc"]["estimate"]
    )


def test_bootstrap_interval_width_matches_the_binomial_by_hand():
    """n = 1000 at 80 % accuracy: the normal approximation gives ±1.96·sqrt(0.8·0.2/1000) = ±2.48 points."""
    target = np.zeros(1000, dtype=int)
    pred = np.r_[np.zeros(800, dtype=int), np.ones(200, dtype=int)]
    iv = bootstrap_interval(target, pred, n_boot=4000, seed=1)["acc"]
    half = 1.96 * math.sqrt(0.8 * 0.2 / 1000)
    assert iv["estimate"] == 0.8
    assert iv["low"] == pytest.approx(0.8 - half, abs=0.004)
    assert iv["high"] == pytest.approx(0.8 + half, abs=0.004)


def test_bootstrap_degenerate_cases_and_seed():
    target = [0, 1, 2, 1, 0]
    iv = bootstrap_interval(target, target, n_boot=200)
    assert iv["acc"] == {"estimate": 1.0, "low": 1.0, "high": 1.0}
    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert bootstrap_interval(t, p, seed=5) == bootstrap_interval(t, p, seed=5)
    assert bootstrap_interval(t, p, seed=5) != bootstrap_interval(t, p, seed=6)


def test_paired_interval_by_hand():
    """Identical models: a zero-width interval. A row that fixes 30 of 1000 baseline errors and
    breaks none: every resample's difference is (fixed drawn)/1000, mean +3 points, and the
    interval follows the binomial of the 30 fixes, ±1.96·sqrt(0.03·0.97/1000) ≈ ±1.06 points."""
    target = np.zeros(1000, dtype=int)
    base = np.r_[np.zeros(900, dtype=int), np.ones(100, dtype=int)]
    same = paired_bootstrap(target, base, base, n_boot=300)
    assert same["acc"] == {"diff": 0.0, "low": 0.0, "high": 0.0}
    row = base.copy()
    row[900:930] = 0
    d = paired_bootstrap(target, base, row, n_boot=4000, seed=2)["acc"]
    half = 1.96 * math.sqrt(0.03 * 0.97 / 1000)
    assert d["diff"] == pytest.approx(0.03)
    assert d["low"] == pytest.approx(0.03 - half, abs=0.002) and d["high"] == pytest.approx(0.03 + half, abs=0.002)
    assert d["low"] > 0  # every sample agrees on the sign: the pairing removes the test set's difficulty


def test_paired_is_tighter_than_unpaired():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 500)
    hard = rng.random(500) < 0.3  # both models fail the same hard examples
    base = np.where(hard, (target + 1) % 3, target)
    row = base.copy()
    row[np.flatnonzero(~hard)[:5]] = (target[np.flatnonzero(~hard)[:5]] + 1) % 3
    d = paired_bootstrap(target, base, row, n_boot=1000)["acc"]
    single = bootstrap_interval(target, row, n_boot=1000)["acc"]
    assert d["high"] - d["low"] < (single["high"] - single["low"]) / 3


def test_cluster_bootstrap_moves_seeds_of_an_example_together():
    """Two identical seeds stacked: resampling by example id gives the one-seed interval; treating
    the 2n predictions as independent would shrink it by about sqrt(2)."""
    rng = np.random.default_rng(4)
    target, pred = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    ids = np.arange(400)
    one = bootstrap_interval(target, pred, units=ids, n_boot=3000, seed=0)["acc"]
    two = bootstrap_interval(np.r_[target, target], np.r_[pred, pred], units=np.r_[ids, ids], n_boot=3000, seed=0)[
        "acc"
    ]
    naive = bootstrap_interval(np.r_[target, target], np.r_[pred, pred], n_boot=3000, seed=0)["acc"]
    assert two["high"] - two["low"] == pytest.approx(one["high"] - one["low"], rel=1e-9)
    assert (naive["high"] - naive["low"]) < 0.8 * (one["high"] - one["low"])


def test_compare_to_baseline_pairs_by_id_and_calls_no_loss():
    ids = [f"t{i}" for i in range(200)]
    target = [i % 2 for i in range(200)]
    base = prediction_record(ids, target, target)
    worse = list(target)
    for i in range(10):
        worse[i] = 1 - worse[i]
    row = prediction_record(ids[::-1], target[::-1], worse[::-1])  # another order: paired by id
    out = compare_to_baseline([base], [row], n_boot=500)
    assert out["pairs"] == 200 and out["base_only_correct"] == 10 and out["row_only_correct"] == 0
    assert out["diff_acc"] == pytest.approx(-5.0)
    assert out["p_mcnemar"] == pytest.approx(2 / 2**10)
    assert out["diff_acc_low"] < -5.0 < out["diff_acc_high"] <= 0 and out["no_loss"] is False
    assert compare_to_baseline([base], [base], n_boot=100)["no_loss"] is True
    with pytest.raises(ValueError, match="different labels"):
        compare_to_baseline([base], [prediction_record(ids, [1 - t for t in target], target)])


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std([5.0]) == (5.0, 0.0)


# ----------------------------------------------------------------- the report's interval columns
def _job(folder, name, seed, sparsity, correct):
    """A completed job's results.json with per-example predictions (``correct``: which of 200 it got right)."""
    import json

    ids = [f"x{i}" for i in range(200)]
    target = [i % 3 for i in range(200)]
    pred = [t if ok else (t + 1) % 3 for t, ok in zip(target, correct)]
    acc = sum(correct) / 200
    results = {
        "status": "completed",
        "metrics": {"test/acc": acc, "test/f1_macro": acc},
        "params": {"total": 1e6 * (1 - sparsity), "encoder": 5e5, "word_embeddings": 4e5},
        "dense": {"params": {"total": 1e6}, "flops_per_token": 10.0},
        "flops_per_token": 10.0 * (1 - sparsity / 2),
        "speed": {"speedup": 1 + sparsity, "latency_ms": 1.0},
        "pruning": {"sparsity_encoder_linear": sparsity} if sparsity else None,
        "predictions": prediction_record(ids, target, pred),
        "config": {"seed": seed, "prune": {"sparsity": sparsity} if sparsity else {}, "distill": {}},
    }
    job = folder / name
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps(results))
    (job / "fold_0").mkdir()  # a CV fold inside a job is part of it, never a row of its own
    (job / "fold_0" / "results.json").write_text(json.dumps({**results, "status": "failed"}))
    return acc


def test_report_pairs_rows_with_the_same_seed_baseline_and_averages_seeds(tmp_path):
    from blockprune.report import build_table, to_markdown

    right = np.ones(200, dtype=bool)
    base = {1: right.copy(), 2: right.copy()}
    base[2][:20] = False  # seed 2's baseline is worse
    row = {1: right.copy(), 2: right.copy()}
    row[1][:10] = False  # 10 losses against its own seed's baseline
    row[2][:20] = False  # seed 2: the same examples as its baseline lost: no difference
    accs = {s: _job(tmp_path, f"base_s{s}", s, 0.0, base[s]) for s in (1, 2)}
    row_accs = [_job(tmp_path, f"pruned_s{s}", s, 0.5, row[s]) for s in (1, 2)]
    table = build_table([tmp_path]).set_index("row")
    assert list(table.index) == ["baseline", "50% pruning"]
    assert (table["seeds"] == 2).all() and (table["status"] == "completed").all()
    assert table.loc["baseline", "accuracy"] == pytest.approx(50 * (accs[1] + accs[2]))
    assert table.loc["50% pruning", "accuracy_std"] == pytest.approx(100 * np.std(row_accs, ddof=1))
    pruned = table.loc["50% pruning"]
    assert pruned["diff_acc"] == pytest.approx(-10 / 400 * 100)  # 10 losses in 400 pairs
    assert pruned["p_mcnemar"] == pytest.approx(2 / 2**10)
    assert pruned["diff_acc_low"] < pruned["diff_acc"] < pruned["diff_acc_high"] and pruned["no_loss"] == False  # noqa: E712
    assert pruned["test_examples"] == 200
    assert pruned["acc_low"] < pruned["accuracy"] < pruned["acc_high"]
    md = to_markdown(build_table([tmp_path]))
    assert "-2.50 [" in md and "± " in md and "| no |" in md and "lower bound is at least -0.5 points" in md


def test_report_files_carry_the_intervals(tmp_path):
    from blockprune.report import write_report

    right = np.ones(200, dtype=bool)
    _job(tmp_path / "jobs", "base", 1, 0.0, right)
    _job(tmp_path / "jobs", "pruned", 1, 0.25, right)
    table = write_report([tmp_path / "jobs"], tmp_path)
    assert table.set_index("row").loc["25% pruning", "no_loss"] == True  # noqa: E712 - identical predictions
    csv = (tmp_path / "table1.csv").read_text()
    assert "diff_acc_low" in csv and "p_mcnemar" in csv
    assert (tmp_path / "accuracy_vs_speedup.png").read_bytes()[:4] == b"\x89PNG"


def test_report_pairs_the_deployed_runtimes_predictions_with_the_baselines_fp32_ones(tmp_path):
    import json

    import pandas as pd

    from blockprune.report import build_table, to_markdown

    right = np.ones(200, dtype=bool)
    _job(tmp_path, "base", 1, 0.0, right)
    _job(tmp_path, "pruned", 1, 0.5, right)  # PyTorch fp32: no loss
    results = json.loads((tmp_path / "pruned" / "results.json").read_text())
    served = list(results["predictions"]["pred"])
    for i in range(8):  # served in int8, 8 of its 200 right answers turn wrong
        served[i] = (served[i] + 1) % 3
    results["deploy"] = {
        "best": {"runtime": "onnx-int8", "speedup": 3.2, "accuracy": 192 / 200},
        "runtimes": {"onnx-int8": {"verified": True, "accuracy": 192 / 200, "predictions": served}},
    }
    (tmp_path / "pruned" / "results.json").write_text(json.dumps(results))
    row = build_table([tmp_path]).set_index("row").loc["50% pruning"]
    assert row["diff_acc"] == pytest.approx(0.0)  # the PyTorch model itself lost nothing
    assert row["deployed_diff_acc"] == pytest.approx(-4.0)  # 8 of 200 lost when served
    assert row["deployed_diff_acc_low"] < -4.0 < row["deployed_diff_acc_high"] < 0
    assert row["deployed_p_mcnemar"] == pytest.approx(2 / 2**8)
    md = to_markdown(build_table([tmp_path]))
    assert "onnx-int8 3.20x 96.00, -4.00 [" in md

    results["deploy"]["runtimes"]["onnx-int8"]["predictions"] = served[:-1]  # not this job's test split
    (tmp_path / "pruned" / "results.json").write_text(json.dumps(results))
    row = build_table([tmp_path]).set_index("row").loc["50% pruning"]
    assert pd.isna(row["deployed_diff_acc"]) and row["deployed_runtime"] == "onnx-int8"


def test_a_row_whose_seeds_served_different_runtimes_names_them_all(tmp_path):
    """Two seeds of one row, one served in OpenVINO and one in openvino-int8: the row's deployed cell
    names both (its speed-up is their mean), not only the first seed's runtime."""
    import json

    from blockprune.report import build_table, to_markdown

    right = np.ones(200, dtype=bool)
    _job(tmp_path, "base", 1, 0.0, right)
    for seed, runtime, speedup in ((1, "openvino", 4.0), (2, "openvino-int8", 6.0)):
        _job(tmp_path, f"pruned_{seed}", seed, 0.5, right)
        results = json.loads((tmp_path / f"pruned_{seed}" / "results.json").read_text())
        results["deploy"] = {"best": {"runtime": runtime, "speedup": speedup, "accuracy": 1.0}}
        (tmp_path / f"pruned_{seed}" / "results.json").write_text(json.dumps(results))
    row = build_table([tmp_path]).set_index("row").loc["50% pruning"]
    assert row["seeds"] == 2 and row["deployed_runtime"] == "openvino / openvino-int8"
    assert "openvino / openvino-int8 5.00x 100.00" in to_markdown(build_table([tmp_path]))
