"""The speed-up written into every job's results.json: the final model against the dense one it came from."""

from __future__ import annotations

from typing import Any

import torch

from blockprune.bench.inference import benchmark_models


def measure_speedup(
    model, dense_reference, seq_len: int, batch_size: int, device: str | None, dtype: str, warmup: int, repeats: int
) -> dict[str, Any]:
    """Latency of a job's final model and, for a pruned job, of the dense model it started from,
    timed alternately in the job's process (a speed-up depends only on the removed structure)."""
    models = {"dense": dense_reference, "final": model} if dense_reference is not None else {"final": model}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = benchmark_models(
        {k: m.eval() for k, m in models.items()},
        batch_sizes=[batch_size],
        seq_lens=[None],
        typical_seq_len=seq_len,
        device=device,
        dtypes=[dtype],
        warmup=warmup,
        repeats=repeats,
    )
    cell = result["cells"][0]
    final = cell["results"]["final"]
    return {
        "speedup": final["speedup"] if dense_reference is not None else 1.0,
        "latency_ms": final["median_ms"],
        "dense_latency_ms": cell["results"]["dense"]["median_ms"]
        if dense_reference is not None
        else final["median_ms"],
        "measured_over_analytic": final.get("measured_over_analytic"),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "device": device,
        "dtype": dtype,
        "environment": result["environment"],
    }
