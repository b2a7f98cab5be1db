"""Export a model to runtimes, re-test each on real texts, time them against the dense model.

Every variant is re-tested because int8 and bfloat16 change predictions (how much depends on
the model and the CPU), and timed in one process with the runs alternated round-robin and
medians taken, so drift (another process, clock changes) hits all variants alike. Two
speed-ups are reported per runtime: over the dense model in PyTorch float32 (what a user gains
in all) and over the dense model in the same runtime (pruning's own share).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blockprune.bench.timing import round_robin
from blockprune.deploy.inference import length_batches
from blockprune.deploy.manifest import check_manifest, cpu_info, write_manifest
from blockprune.deploy.runtimes import EXACT, FILES, Runtime, check_runtimes, export_runtime, open_runtime

log = logging.getLogger("blockprune")

#: Max abs logit difference accepted for a float32 runtime.
FLOAT32_TOLERANCE = 1e-4


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int) -> list[tuple[np.ndarray, dict]]:
    """(indices, batch) pairs over ``texts``, batched by length."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    out = []
    for idx in length_batches([len(x) for x in enc["input_ids"]], batch_size):
        batch = tokenizer.pad([{k: enc[k][i] for k in keys} for i in idx], padding=True, return_tensors="np")
        out.append((idx, {k: batch[k] for k in keys}))
    return out


def _timing_batch(tokenizer: Any, texts: Sequence[str], batch: int, seq_len: int, vocab: int) -> dict[str, np.ndarray]:
    """``batch`` texts padded / truncated to ``seq_len`` tokens (random ids when there are no texts)."""
    if texts:
        chosen = [texts[i % len(texts)] for i in range(batch)]
        enc = tokenizer(chosen, truncation=True, max_length=seq_len, padding="max_length", return_tensors="np")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    ids = np.random.default_rng(0).integers(1, vocab, size=(batch, seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _time_alternated(
    runtimes: Mapping[str, Runtime], batch: dict[str, np.ndarray], warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds per call of each runtime, calls interleaved round-robin."""
    for rt in runtimes.values():
        for _ in range(warmup):
            rt.logits(batch)

    def once(name: str) -> float:
        start = time.perf_counter()
        runtimes[name].logits(batch)
        return time.perf_counter() - start

    times = round_robin(list(runtimes), repeats, once)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def _open_all(
    model: nn.Module,
    tokenizer: Any,
    folder: Path,
    names: list[str],
    int8: Mapping | None,
    threads: int | None,
    calibration_texts: Sequence[str] = (),
    overwrite: bool = False,
):
    out = {}
    for name in names:
        export_runtime(
            model, tokenizer, folder, name, int8=int8, calibration_texts=calibration_texts, overwrite=overwrite
        )
        out[name] = open_runtime(name, folder, model=model, threads=threads)
    return out


def deploy_job(
    model: nn.Module,
    tokenizer: Any,
    model_dir: str | os.PathLike,
    dense_reference: nn.Module | None,
    texts: Sequence[str],
    labels: Sequence[int] | None,
    runtimes: Sequence[str],
    *,
    seq_len: int,
    max_length: int = 512,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 2,
    repeats: int = 10,
    threads: int | None = None,
    max_accuracy_drop: float = 0.5,
    min_agreement: float = 0.99,
    int8: Mapping[str, Any] | None = None,
    calibration_texts: Sequence[str] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export ``model`` (saved in ``model_dir``) to ``runtimes``, re-test and time each; write deploy.json.

    ``overwrite`` replaces ONNX files in ``model_dir`` that blockprune did not write (else refused).
    ``calibration_texts`` (training texts, never the test ones) calibrate ``openvino-int8``.

    ``texts`` / ``labels`` are the job's test split (labels as class ids; None: agreement only).
    ``dense_reference`` is the dense model the job started from (None: ``model`` is the dense one).
    A runtime is *verified* when a float32 one gives the same logits as PyTorch (<= 1e-4), and
    a reduced-precision one loses at most ``max_accuracy_drop`` accuracy points (with labels) or
    agrees with PyTorch float32 on at least ``min_agreement`` of the texts (without). The
    fastest verified runtime at the largest batch size is recorded for serving. Returns the
    ``deploy`` section of results.json.
    """
    names = check_runtimes(["torch", *runtimes])
    folder = Path(model_dir)
    check_manifest(folder, overwrite)
    model = copy.deepcopy(model).float().cpu().eval()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        final = _open_all(model, tokenizer, folder, names, int8, threads, calibration_texts, overwrite)
        per_runtime: dict[str, dict[str, Any]] = {n: {"file": FILES.get(n)} for n in names}
        for name, runtime in final.items():
            if getattr(runtime, "precision", None):  # what a plugin chose for this CPU (OpenVINO: bf16 or f32)
                per_runtime[name]["precision"] = runtime.precision
        _retest(
            final, per_runtime, tokenizer, texts, labels, max_length, max_accuracy_drop, min_agreement, seq_len, model
        )
        with tempfile.TemporaryDirectory(prefix="blockprune-dense-") as tmp:
            dense = None
            if dense_reference is not None:
                ref = copy.deepcopy(dense_reference).float().cpu().eval()
                dense = _open_all(ref, tokenizer, Path(tmp), names, int8, threads, calibration_texts)
            vocab = int(model.get_input_embeddings().num_embeddings)
            timing = _time(final, dense, tokenizer, texts, batch_sizes, seq_len, vocab, warmup, repeats)
        largest = f"batch_{max(batch_sizes)}"
        for name in names:
            row = per_runtime[name]
            row["latency_ms"] = {k: v["final"][name] for k, v in timing.items()}
            row["dense_latency_ms"] = {k: v["dense"][name] for k, v in timing.items()}
            row["throughput_per_s"] = {k: int(k.split("_")[1]) * 1e3 / v["final"][name] for k, v in timing.items()}
            row["speedup_vs_dense_torch"] = {k: v["dense"]["torch"] / v["final"][name] for k, v in timing.items()}
            row["speedup_vs_dense_same_runtime"] = {k: v["dense"][name] / v["final"][name] for k, v in timing.items()}
        verified = [n for n in names if per_runtime[n]["verified"]]
        fastest = min(verified, key=lambda n: per_runtime[n]["latency_ms"][largest])
        best = per_runtime[fastest]
        record = {
            "fastest": fastest,
            "selected_by": f"lowest latency at {largest.replace('_', ' ')} x {seq_len} tokens among verified runtimes",
            "best": {
                "runtime": fastest,
                "speedup": best["speedup_vs_dense_torch"][largest],
                "accuracy": best.get("accuracy"),
                "batch_size": max(batch_sizes),
            },
            "runtimes": per_runtime,
            "seq_len": seq_len,
            "batch_sizes": list(batch_sizes),
            "repeats": repeats,
            "dense_reference": "dense model of the job" if dense_reference is not None else "the model itself",
            "environment": {**cpu_info(), "threads": torch.get_num_threads()},
        }
        served = {n: {k: v for k, v in row.items() if k != "predictions"} for n, row in per_runtime.items()}
        write_manifest(folder, {**record, "runtimes": served})  # the model folder keeps no test predictions
        log.info(
            "deployed %s: fastest verified runtime %s (%.2fx over %s in PyTorch fp32 at %s)",
            folder,
            fastest,
            record["best"]["speedup"],
            "the dense model" if dense_reference is not None else "this model",
            largest,
        )
        return record
    finally:
        torch.set_num_threads(old_threads)


def _retest(final, per_runtime, tokenizer, texts, labels, max_length, max_drop, min_agreement, seq_len, model) -> None:
    """Accuracy, agreement with PyTorch float32 and max logit difference of each runtime."""
    if texts:
        batches = _encode(tokenizer, texts, max_length, 64)
    else:  # no texts: random ids, agreement only
        vocab = int(model.get_input_embeddings().num_embeddings)
        rng = np.random.default_rng(0)
        batches = []
        for i in range(4):
            ids = rng.integers(1, vocab, size=(16, seq_len), dtype=np.int64)
            batches.append(
                (
                    np.arange(16 * i, 16 * (i + 1)),
                    {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
                )
            )
    n = sum(len(idx) for idx, _ in batches)
    logits = {}
    for name, rt in final.items():
        out = None
        for idx, batch in batches:
            got = rt.logits(batch)
            out = np.zeros((n, got.shape[-1]), dtype=np.float32) if out is None else out
            out[idx] = got
        logits[name] = out
    ref = logits["torch"]
    target = np.asarray(labels) if labels is not None and texts else None
    ref_acc = float((ref.argmax(-1) == target).mean()) if target is not None else None
    for name, got in logits.items():
        row = per_runtime[name]
        row["max_abs_logit_diff"] = float(np.abs(got.astype(np.float64) - ref).max())
        row["agreement"] = float((got.argmax(-1) == ref.argmax(-1)).mean())
        row["n_texts"] = n
        if target is not None:
            row["accuracy"] = float((got.argmax(-1) == target).mean())
            row["accuracy_drop_points"] = (ref_acc - row["accuracy"]) * 100
            row["predictions"] = got.argmax(-1).tolist()  # in the texts' order: paired comparisons need them
        if name in EXACT:
            row["verified"] = row["max_abs_logit_diff"] <= FLOAT32_TOLERANCE
            row["verified_by"] = f"max |logit difference| vs PyTorch float32 <= {FLOAT32_TOLERANCE}"
        elif target is not None:
            row["verified"] = row["accuracy_drop_points"] <= max_drop
            row["verified_by"] = f"accuracy at most {max_drop} points below PyTorch float32 on {n} labelled texts"
        else:
            row["verified"] = row["agreement"] >= min_agreement
            row["verified_by"] = (
                f"agrees with PyTorch float32 on >= {min_agreement:.0%} of {n} {'texts' if texts else 'random inputs'}"
            )
        if not row["verified"]:
            log.warning("runtime %s not verified (%s); it is not used for serving", name, row["verified_by"])


def _time(final, dense, tokenizer, texts, batch_sizes, seq_len, vocab, warmup, repeats) -> dict[str, dict]:
    out = {}
    for b in batch_sizes:
        batch = _timing_batch(tokenizer, texts, b, seq_len, vocab)
        entries = {("final", n): rt for n, rt in final.items()}
        if dense is not None:
            entries.update({("dense", n): rt for n, rt in dense.items()})
        flat = _time_alternated({f"{k[0]}/{k[1]}": v for k, v in entries.items()}, batch, warmup, repeats)
        got_final = {n: flat[f"final/{n}"] for n in final}
        got_dense = {n: flat[f"dense/{n}"] for n in final} if dense is not None else dict(got_final)
        out[f"batch_{b}"] = {"final": got_final, "dense": got_dense}
    return out


def deploy_after_job(
    model: nn.Module,
    tokenizer: Any,
    model_dir: str | os.PathLike,
    dense_reference: nn.Module | None,
    datamodule: Any,
    deploy: Mapping[str, Any],
    seq_len: int,
) -> dict[str, Any]:
    """:func:`deploy_job` for a finished training job: its test split, its typical length, the
    ``deploy`` config group's settings (``conf/deploy``)."""
    settings = {k: (list(v) if k in ("runtimes", "batch_sizes") else v) for k, v in dict(deploy).items()}
    settings["int8"] = dict(settings.get("int8") or {})
    settings["int8"]["keep_fp32"] = list(settings["int8"].get("keep_fp32") or [])
    settings["calibration_texts"] = calibration_sample(datamodule.texts("train"), settings.get("calibration_texts"))
    return deploy_job(
        model,
        tokenizer,
        model_dir,
        dense_reference,
        datamodule.texts("test"),
        datamodule.labels("test"),
        seq_len=seq_len,
        max_length=int(datamodule.max_length),
        **settings,
    )


def calibration_sample(texts: Sequence[str], size: int | None) -> list[str]:
    """``size`` training texts spread evenly over the split (all when fewer) to calibrate int8 activations."""
    if not size:
        return []
    step = max(1, len(texts) // int(size))
    return list(texts[::step][: int(size)])


def pool_deploy(sections: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ``deploy`` section for a cross-validation job from its folds' sections: accuracy and
    agreement pooled over all folds' test texts (weighted by their counts), a runtime verified
    only when it is in every fold, speed and environment from the first fold (same architecture)."""
    if not sections:
        raise ValueError("pool_deploy needs at least one fold's deploy section")
    first = copy.deepcopy(sections[0])
    for name, row in first["runtimes"].items():
        rows = [s["runtimes"][name] for s in sections]
        n = sum(r["n_texts"] for r in rows)
        row["n_texts"] = n
        row["verified"] = all(r["verified"] for r in rows)
        row["max_abs_logit_diff"] = max(r["max_abs_logit_diff"] for r in rows)
        for key in ("accuracy", "agreement"):
            if all(r.get(key) is not None for r in rows):
                row[key] = sum(r[key] * r["n_texts"] for r in rows) / n
        if all(r.get("predictions") is not None for r in rows):  # fold order, as crossval.pool_predictions
            row["predictions"] = [p for r in rows for p in r["predictions"]]
        drops = [r.get("accuracy_drop_points") for r in rows]
        if all(d is not None for d in drops):
            row["accuracy_drop_points"] = sum(d * r["n_texts"] for d, r in zip(drops, rows)) / n
    verified = [n for n, r in first["runtimes"].items() if r["verified"]]
    largest = f"batch_{max(first['batch_sizes'])}"
    fastest = min(verified, key=lambda n: first["runtimes"][n]["latency_ms"][largest])
    best = first["runtimes"][fastest]
    first["fastest"] = fastest
    first["best"] = {
        **first["best"],
        "runtime": fastest,
        "speedup": best["speedup_vs_dense_torch"][largest],
        "accuracy": best.get("accuracy"),
    }
    first["folds"] = len(sections)
    return first
