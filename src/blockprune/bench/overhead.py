"""Training-step overhead: how much longer a masked or distillation step takes than a dense one.

The steps are given as callables (one full optimiser step each), so this module times anything;
:mod:`blockprune.bench.train_steps` builds the dense, masked and masked + KD steps of a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from blockprune.bench.environment import environment
from blockprune.bench.timing import round_robin, stats_ms, timed
from blockprune.errors import ConfigError

OVERHEAD_SCHEMA = "blockprune.training_overhead/1"


def training_step_overhead(
    dense_step: Callable[[], Any],
    other_steps: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 10,
    warmup: int = 2,
    cuda_sync: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Time training steps against the dense one: ``{name: median ms, ratio over dense}``.

    Each callable must perform ONE full optimiser step on a fixed batch (forward, loss,
    backward, ``optimizer.step()``, ``zero_grad``), e.g. a dense fine-tuning step, a masked
    (movement-pruning) step, a distillation step. All callables are warmed up, then timed
    ``repeats`` times, interleaved round-robin. ``cuda_sync=None`` synchronises CUDA around
    each call when CUDA is initialised.
    """
    if "dense" in other_steps:
        raise ConfigError("other_steps must not use the name 'dense' (reserved for the dense step).")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup}).")
    steps = {"dense": dense_step, **other_steps}
    sync = torch.cuda.is_available() and torch.cuda.is_initialized() if cuda_sync is None else cuda_sync

    def once(name: str) -> float:
        return timed(steps[name], sync)

    from tqdm.auto import tqdm

    for name in steps:
        for _ in range(warmup):
            once(name)
    times = round_robin(
        list(steps), repeats, once, rounds=lambda r: tqdm(r, desc="training steps", disable=not progress)
    )
    stats = {n: stats_ms(t) for n, t in times.items()}
    dense_ms = stats["dense"]["median_ms"]
    return {
        "schema": OVERHEAD_SCHEMA,
        "environment": environment("cuda" if sync else "cpu"),
        "baseline": "dense",
        "warmup": warmup,
        "repeats": repeats,
        "steps": stats,
        "ratio_vs_dense": {n: s["median_ms"] / dense_ms for n, s in stats.items()},
    }
