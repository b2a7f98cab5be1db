"""One benchmark cell: every ready model timed on the same (batch, seq_len) random input, interleaved.

A cell that cannot run (longer than the models' positions, over the token or time budget, out
of memory) is skipped with a note saying which limit to raise; the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from blockprune.bench.model_info import flops_at
from blockprune.bench.runners import Ready
from blockprune.bench.timing import is_oom, round_robin, stats_ms, timed
from blockprune.errors import ConfigError


def resolve_cells(
    batch_sizes: Iterable[int],
    seq_lens: Iterable[int | None],
    typical_seq_len: int,
    cells: Iterable[tuple[int, int | None]] | None,
) -> list[dict[str, Any]]:
    """The grid (or the explicit ``cells``) as ``{batch, seq_len, typical}``; ``None`` = the typical length."""
    pairs = list(cells) if cells is not None else [(b, s) for b in batch_sizes for s in seq_lens]
    out, seen = [], set()
    for batch, seq in pairs:
        resolved = typical_seq_len if seq is None else int(seq)
        if int(batch) < 1 or resolved < 1:
            raise ConfigError(f"benchmark cell (batch={batch}, seq_len={seq}) must have batch >= 1 and seq_len >= 1.")
        if (int(batch), resolved) in seen:
            continue
        seen.add((int(batch), resolved))
        out.append({"batch": int(batch), "seq_len": resolved, "typical": seq is None or resolved == typical_seq_len})
    return out


def skipped_cell(dev, dtype, cell, note) -> dict[str, Any]:
    return {"device": str(dev), "dtype": dtype, **cell, "status": "skipped", "note": note, "repeats": 0, "results": {}}


@dataclass(frozen=True)
class CellPlan:
    """What every cell of one benchmark run shares: the models' names and shapes, limits and repeats."""

    names: list[str]  # the first is the baseline
    info: dict[str, Any]  # model_info: FLOPs per token, parameters
    dev: torch.device
    vocab: int  # input ids are drawn from [1, vocab)
    max_len: int | None  # the models' maximum input length
    max_tokens: int
    budget: float  # seconds per cell
    warmup: int
    repeats: int
    min_repeats: int
    seed: int

    @property
    def baseline(self) -> str:
        return self.names[0]


def run_cell(
    plan: CellPlan, ready: Mapping[str, Ready], per_model_skip: Mapping[str, str], cell, dtype
) -> dict[str, Any]:
    """Warm up, fit the repeats to the time budget, time round-robin, and compare with the baseline."""
    batch, seq = cell["batch"], cell["seq_len"]
    dev, names, budget = plan.dev, plan.names, plan.budget
    warmup, repeats, min_repeats = plan.warmup, plan.repeats, plan.min_repeats
    if plan.max_len is not None and seq > plan.max_len:
        return skipped_cell(dev, dtype, cell, f"seq_len {seq} > the models' maximum input length {plan.max_len}.")
    if batch * seq > plan.max_tokens:
        return skipped_cell(
            dev,
            dtype,
            cell,
            f"batch x seq_len = {batch * seq} tokens > max_tokens={plan.max_tokens} (raise max_tokens to run it).",
        )
    gen = torch.Generator().manual_seed(plan.seed)
    ids = torch.randint(1, plan.vocab, (batch, seq), generator=gen).to(dev)
    mask = torch.ones_like(ids)
    on_gpu = dev.type == "cuda"
    active = [n for n in names if n in ready]
    notes = [f"{n}: {per_model_skip[n]}" for n in names if n in per_model_skip]

    def run_once(name: str) -> float:
        return timed(lambda: ready[name].run(ids, mask), on_gpu)

    peak_mb: dict[str, float | None] = dict.fromkeys(active)
    try:
        with torch.inference_mode():
            first = {}
            for name in active:  # one run each first: the cost estimate for the time budget
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats(dev)
                first[name] = run_once(name)
                if ready[name].compiles:  # that run compiled (seconds to minutes); the next one is the cost
                    first[name] = run_once(name)
            round_s = sum(first.values())
            if round_s * (warmup - 1 + min_repeats) > 2 * budget:
                return skipped_cell(
                    dev,
                    dtype,
                    cell,
                    f"one round of all models took {round_s:.1f} s; warm-up + {min_repeats} repeats would exceed "
                    f"the cell time budget ({budget:.0f} s; raise cell_time_budget_s to run it).",
                )
            last = dict(first)
            for name in active:
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats(dev)
                for _ in range(warmup - 1):
                    last[name] = run_once(name)
                if on_gpu:
                    peak_mb[name] = torch.cuda.max_memory_allocated(dev) / 2**20
            round_s = sum(last.values())
            n_rep = repeats
            if round_s * repeats > budget:
                n_rep = max(min_repeats, min(repeats, int(budget / max(round_s, 1e-9))))
                notes.append(f"repeats reduced from {repeats} to {n_rep} to fit the cell time budget ({budget:.0f} s).")
            times = round_robin(active, n_rep, run_once)
    except Exception as err:  # noqa: BLE001 - out of memory is a skip, anything else a bug
        if not is_oom(err):
            raise
        if on_gpu:
            torch.cuda.empty_cache()
        return skipped_cell(dev, dtype, cell, f"out of memory: {str(err).splitlines()[0][:200]}")
    return {
        "device": str(dev),
        "dtype": dtype,
        **cell,
        "status": "ok",
        "note": " ".join(notes) or None,
        "repeats": len(next(iter(times.values()))) if times else 0,
        "results": _compare(plan, times, per_model_skip, batch, seq, peak_mb),
    }


def _compare(plan: CellPlan, times, per_model_skip, batch, seq, peak_mb) -> dict[str, Any]:
    """Per model: statistics, throughput, speed-up over the baseline, and the analytic speed-up."""
    baseline, info = plan.baseline, plan.info
    results: dict[str, Any] = {}
    base_stats = stats_ms(times[baseline]) if baseline in times else None
    base_flops = flops_at(info, baseline, seq)
    for name in plan.names:
        if name not in times:
            results[name] = {"status": "skipped", "note": per_model_skip.get(name)}
            continue
        st = stats_ms(times[name])
        med_s = st["median_ms"] / 1e3
        flops = flops_at(info, name, seq)
        speedup = base_stats["median_ms"] / st["median_ms"] if base_stats else None
        analytic = base_flops / flops if (base_flops and flops) else None
        results[name] = {
            "status": "ok",
            **st,
            "throughput_seq_per_s": batch / med_s,
            "throughput_tokens_per_s": batch * seq / med_s,
            "speedup": 1.0 if name == baseline else speedup,
            "flops_per_token": flops,
            "params": info[name]["parameters"]["total"],
            "analytic_speedup": analytic,
            "measured_over_analytic": (speedup / analytic) if (speedup and analytic) else None,
            "achieved_gflops_per_s": (flops * batch * seq / med_s / 1e9) if flops else None,
            "peak_memory_mb": peak_mb.get(name),
        }
    return results
