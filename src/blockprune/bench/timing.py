"""Timing primitives shared by the inference and training-step benchmarks.

Both time several contenders against each other, so both interleave them round-robin (any drift
-- thermal throttling, another process waking up -- hits all alike) and report the same
statistics of the repeats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from blockprune.errors import ConfigError


@contextmanager
def num_threads(threads: int | None):
    """``torch.set_num_threads(threads)`` for the block (None keeps the current setting), restored after."""
    old = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1 (or None to keep {old}), got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def timed(fn: Callable[[], Any], cuda_sync: bool) -> float:
    """Seconds one call of ``fn`` takes (with ``torch.cuda.synchronize()`` around it on GPU)."""
    if cuda_sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if cuda_sync:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def round_robin(
    names: Sequence[str],
    repeats: int,
    once: Callable[[str], float],
    rounds: Callable[[range], Iterable[int]] = iter,
) -> dict[str, list[float]]:
    """``repeats`` rounds of ``once(name)`` over all names; the starting name rotates each round.

    ``rounds`` wraps the range of rounds (e.g. a progress bar).
    """
    times: dict[str, list[float]] = {n: [] for n in names}
    names = list(names)
    for r in rounds(range(repeats if names else 0)):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(once(name))
    return times


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, mean, min, p10/p90, quartiles and IQR of ``seconds``, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    q10, q25, q50, q75, q90 = np.percentile(ms, [10, 25, 50, 75, 90])
    return {
        "median_ms": float(q50),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "p10_ms": float(q10),
        "p90_ms": float(q90),
        "q1_ms": float(q25),
        "q3_ms": float(q75),
        "iqr_ms": float(q75 - q25),
        "repeats": int(ms.size),
    }


def is_oom(err: BaseException) -> bool:
    """Out of memory (GPU or CPU): a cell that does not fit is skipped, not a failure."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
