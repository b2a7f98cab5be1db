"""Test metrics with intervals, and paired comparisons of two models on the same examples.

A small test set hides losses of several points, so every metric comes with a 95 % bootstrap
interval, and a compressed model is compared with its dense baseline example by example: a
paired bootstrap interval of the difference and McNemar's exact test on the discordant pairs.

Everything is computed from per-example predictions. Accuracy and macro-F1 are functions of
counts that are linear in per-example weights (correct, and per class true/false positives and
false negatives), so a bootstrap sample is one row of multinomial weights and all samples are a
single matrix product. A *unit* is what is resampled: one example by default; with several
seeds stacked, an example id, so that the seeds of one example move together (cluster bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

METRICS = ("acc", "f1_macro")
#: A row is "no loss" only when its paired interval's lower bound is at least this (in points).
NO_LOSS_POINTS = -0.5
N_BOOT = 2000
_CHUNK = 500  # bootstrap samples per matrix product: bounds memory at ~_CHUNK * units floats


def _counts(
    target: np.ndarray, pred: np.ndarray, units: np.ndarray, n_units: int, num_classes: int
) -> dict[str, np.ndarray]:
    """Per-unit sufficient statistics: correct and total (n_units,), tp/fp/fn (n_units, num_classes)."""
    correct = (target == pred).astype(np.float64)
    out = {
        "correct": np.bincount(units, weights=correct, minlength=n_units),
        "total": np.bincount(units, minlength=n_units).astype(np.float64),
    }
    for name, cls, hit in (("tp", pred, correct), ("fp", pred, 1 - correct), ("fn", target, 1 - correct)):
        table = np.zeros((n_units, num_classes))
        np.add.at(table, (units, cls), hit)
        out[name] = table
    return out


def _metrics(counts: Mapping[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 under per-unit ``weights`` ((B, n_units) or (n_units,)).

    Macro-F1 follows torchmetrics: the mean F1 over classes that occur in the targets or the
    predictions of the (weighted) sample; a class seen in neither does not count.
    """
    acc = (weights @ counts["correct"]) / (weights @ counts["total"])
    tp, fp, fn = (weights @ counts[k] for k in ("tp", "fp", "fn"))
    denom = 2 * tp + fp + fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    f1_macro = f1.sum(-1) / np.maximum(present.sum(-1), 1)
    return {"acc": acc, "f1_macro": f1_macro}


def _prepare(
    target: Sequence[int], preds: Sequence[Sequence[int]], units: Sequence[Any] | None, num_classes: int | None
):
    target = np.asarray(target, dtype=np.int64)
    arrays = [np.asarray(p, dtype=np.int64) for p in preds]
    if any(a.shape != target.shape for a in arrays):
        raise ValueError(f"predictions and targets differ in length: {[a.shape for a in arrays]} vs {target.shape}")
    if len(target) == 0:
        raise ValueError("no examples to evaluate")
    if units is None:
        codes = np.arange(len(target))
    else:
        _, codes = np.unique(np.asarray(units), return_inverse=True)
    n_units = int(codes.max()) + 1
    c = int(num_classes or 1 + max(int(target.max()), *(int(a.max()) for a in arrays)))
    return target, arrays, codes, n_units, c


def _weights(n_units: int, n_boot: int, seed: int):
    """Bootstrap weights in chunks: how often each unit is drawn in each resample."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(_CHUNK, n_boot - done)
        yield rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=size).astype(np.float64)
        done += size


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_interval(
    target: Sequence[int],
    pred: Sequence[int],
    num_classes: int | None = None,
    units: Sequence[Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Point estimate and percentile bootstrap interval of accuracy and macro-F1 (fractions).

    ``units``: the resampled unit of each prediction (default: each prediction its own unit).
    """
    target, (pred,), codes, n_units, c = _prepare(target, [pred], units, num_classes)
    counts = _counts(target, pred, codes, n_units, c)
    point = _metrics(counts, np.ones(n_units))
    samples = {m: [] for m in METRICS}
    for w in _weights(n_units, n_boot, seed):
        for m, v in _metrics(counts, w).items():
            samples[m].append(v)
    out = {}
    for m in METRICS:
        low, high = _interval(np.concatenate(samples[m]), level)
        out[m] = {"estimate": float(point[m]), "low": low, "high": high}
    return out


def paired_bootstrap(
    target: Sequence[int],
    pred_base: Sequence[int],
    pred_row: Sequence[int],
    num_classes: int | None = None,
    units: Sequence[Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Difference row − baseline of accuracy and macro-F1 (fractions) with a paired bootstrap
    interval: both models are scored on the same resampled examples in every sample, so the
    interval reflects only how the two disagree, not how hard the test set happens to be."""
    target, (base, row), codes, n_units, c = _prepare(target, [pred_base, pred_row], units, num_classes)
    cb, cr = _counts(target, base, codes, n_units, c), _counts(target, row, codes, n_units, c)
    ones = np.ones(n_units)
    point = {m: _metrics(cr, ones)[m] - _metrics(cb, ones)[m] for m in METRICS}
    samples = {m: [] for m in METRICS}
    for w in _weights(n_units, n_boot, seed):
        mb, mr = _metrics(cb, w), _metrics(cr, w)
        for m in METRICS:
            samples[m].append(mr[m] - mb[m])
    out = {}
    for m in METRICS:
        low, high = _interval(np.concatenate(samples[m]), level)
        out[m] = {"diff": float(point[m]), "low": low, "high": high}
    return out


def mcnemar_exact(correct_base: Sequence[bool], correct_row: Sequence[bool]) -> dict[str, float]:
    """McNemar's exact test: two-sided binomial p-value on the discordant pairs.

    ``b`` = baseline right and row wrong, ``c`` = baseline wrong and row right; under "no
    difference" each discordant pair is a fair coin, so p = min(1, 2 P(X <= min(b, c))) with
    X ~ Binomial(b + c, 1/2), summed exactly with integers.
    """
    a, r = np.asarray(correct_base, dtype=bool), np.asarray(correct_row, dtype=bool)
    b, c = int(np.sum(a & ~r)), int(np.sum(~a & r))
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    p = 1.0 if n == 0 else min(1.0, 2 * tail / 2**n)  # int / int: exact, correctly rounded
    return {"base_only": b, "row_only": c, "p": p}


def prediction_record(ids: Sequence[str], target: Sequence[int], pred: Sequence[int]) -> dict[str, list]:
    """What a job stores about its test predictions, so that any two jobs can be paired later."""
    if not (len(ids) == len(target) == len(pred)):
        raise ValueError(f"ids, targets and predictions differ in length: {len(ids)}, {len(target)}, {len(pred)}")
    return {"id": list(map(str, ids)), "target": [int(x) for x in target], "pred": [int(x) for x in pred]}


def test_predictions(datamodule, pred: Sequence[int]) -> dict[str, list]:
    """The prediction record of a test run over ``datamodule``'s test split (in its order)."""
    return prediction_record(datamodule.example_ids("test"), datamodule.labels("test"), pred)


def record_metrics(
    record: Mapping[str, Sequence], num_classes: int | None = None, prefix: str = "test/"
) -> dict[str, float]:
    """Accuracy and macro-F1 of a prediction record (pooled over all its examples)."""
    target, (pred,), codes, n_units, c = _prepare(record["target"], [record["pred"]], None, num_classes)
    m = _metrics(_counts(target, pred, codes, n_units, c), np.ones(n_units))
    return {f"{prefix}{k}": float(v) for k, v in m.items()}


def pair_records(
    base: Sequence[Mapping[str, Sequence]], rows: Sequence[Mapping[str, Sequence]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack (baseline, row) prediction records, one pair per seed, matched by example id.

    Returns target, baseline predictions, row predictions and the example id of each pair;
    only ids present in both records of a pair count. Raises when a pair has none in common or
    the two records disagree on an example's label (they were not scored on the same data).
    """
    if len(base) != len(rows) or not rows:
        raise ValueError(f"need one baseline record per row record, got {len(base)} and {len(rows)}")
    parts: list[tuple[np.ndarray, ...]] = []
    for b, r in zip(base, rows):
        index = {k: i for i, k in enumerate(b["id"])}
        keep = [(index[k], j) for j, k in enumerate(r["id"]) if k in index]
        if not keep:
            raise ValueError("the row and its baseline share no test example; were they run on the same data?")
        bi, ri = map(np.asarray, zip(*keep))
        tb, tr = np.asarray(b["target"])[bi], np.asarray(r["target"])[ri]
        if not np.array_equal(tb, tr):
            raise ValueError("the row and its baseline give the same example different labels (different label2id?)")
        parts.append((tr, np.asarray(b["pred"])[bi], np.asarray(r["pred"])[ri], np.asarray(r["id"])[ri]))
    return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]


def compare_to_baseline(
    base: Sequence[Mapping[str, Sequence]],
    rows: Sequence[Mapping[str, Sequence]],
    num_classes: int | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """The paired comparison the report prints: row − baseline in points for accuracy and
    macro-F1 with their paired 95 % intervals, McNemar's p, the number of pairs, and whether
    the row counts as "no loss" (accuracy interval's lower bound >= NO_LOSS_POINTS).

    With several seeds (one record pair per seed) the pairs are pooled and resampled by
    example id, so an example's seeds move together; McNemar counts every pair.
    """
    target, pb, pr, ids = pair_records(base, rows)
    diff = paired_bootstrap(target, pb, pr, num_classes=num_classes, units=ids, n_boot=n_boot, seed=seed)
    test = mcnemar_exact(pb == target, pr == target)
    out: dict[str, Any] = {
        "pairs": int(len(target)),
        "examples": int(len(np.unique(ids))),
        "p_mcnemar": test["p"],
        "base_only_correct": test["base_only"],
        "row_only_correct": test["row_only"],
    }
    for m, name in (("acc", "acc"), ("f1_macro", "f1")):
        out[f"diff_{name}"] = 100 * diff[m]["diff"]
        out[f"diff_{name}_low"] = 100 * diff[m]["low"]
        out[f"diff_{name}_high"] = 100 * diff[m]["high"]
    out["no_loss"] = bool(out["diff_acc_low"] >= NO_LOSS_POINTS)
    return out


def record_interval(
    records: Sequence[Mapping[str, Sequence]], num_classes: int | None = None, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, float]:
    """Pooled accuracy and macro-F1 (points) of one or more records (seeds) with 95 % bootstrap
    intervals, resampling by example id."""
    target = np.concatenate([np.asarray(r["target"]) for r in records])
    pred = np.concatenate([np.asarray(r["pred"]) for r in records])
    ids = np.concatenate([np.asarray(r["id"]) for r in records])
    iv = bootstrap_interval(target, pred, num_classes=num_classes, units=ids, n_boot=n_boot, seed=seed)
    out = {}
    for m, name in (("acc", "acc"), ("f1_macro", "f1")):
        out[f"{name}_low"], out[f"{name}_high"] = 100 * iv[m]["low"], 100 * iv[m]["high"]
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def predict_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> list[int]:
    """Predicted label ids of ``model`` on raw texts through its own tokenizer."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    preds = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            preds.append(model(**{k: v.to(device) for k, v in enc.items()}).logits.argmax(-1).cpu())
    return torch.cat(preds).tolist() if preds else []


def evaluate_texts(
    model, tokenizer, texts: list[str], labels: list[int], max_length: int, batch_size: int = 64
) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on raw texts through its own tokenizer: the re-test of
    a model whose tokenizer changed (vocabulary trimming), where the job's tokenised data no longer fits."""
    pred = predict_texts(model, tokenizer, texts, max_length, batch_size)
    return record_metrics(prediction_record(range(len(texts)), labels, pred), model.config.num_labels)
