"""Inference benchmark: baseline vs pruned/compacted classifiers, side by side in one process.

Speed-up is only meaningful when both models are timed under the same conditions, so
:func:`benchmark_models` times all models in the same process, on the same inputs, with
their timed runs interleaved round-robin (any drift -- thermal throttling, another process
waking up -- hits all models alike). Next to the measured speed-up it reports the analytic
one (ratio of FLOPs per token, :mod:`blockprune.flops`) and measured/analytic.

Default grid and budgets (all configurable):

* ``batch_sizes=(1, 32, 128)`` x ``seq_lens=(None, 128, 512)``; ``None`` = the data's
  typical length (``typical_seq_len``). ``cells=[(batch, seq), ...]`` replaces the grid.
* ``max_tokens`` (batch x seq per cell): cells above it are skipped with a note. Default
  4096 on CPU (e.g. 32 x 128, 8 x 512 -- a BERT-base forward of 4096 tokens is ~0.7 TFLOP,
  several seconds on 2 cores) and 65536 on GPU (128 x 512).
* ``cell_time_budget_s``: the first warm-up run of each model gives the cost of one
  round; repeats are reduced to fit the budget (down to ``min_repeats``), and a cell whose
  minimum cannot fit in twice the budget is skipped with a note. Default 120 s on CPU,
  60 s on GPU. The number of repeats actually used is recorded per cell.
* Out-of-memory in a cell (GPU or CPU) skips that cell with a note; the run goes on.

How each backend's models are made ready for a cell: :mod:`blockprune.bench.runners`; one
cell: :mod:`blockprune.bench.cells`; tables: :mod:`blockprune.bench.output`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn

from blockprune.bench.cells import CellPlan, resolve_cells, run_cell, skipped_cell
from blockprune.bench.dtypes import dtype_skip_reason, normalise_dtype
from blockprune.bench.environment import environment
from blockprune.bench.model_info import max_positions, model_info, vocab_size
from blockprune.bench.runners import onnxruntime_entries, prepare_all, release_all
from blockprune.bench.runtimes import runtime_entries
from blockprune.bench.timing import num_threads
from blockprune.errors import BlockpruneError, ConfigError

SCHEMA = "blockprune.benchmark/1"
DEFAULT_MAX_TOKENS = {"cpu": 4096, "cuda": 65536}
DEFAULT_CELL_TIME_BUDGET_S = {"cpu": 120.0, "cuda": 60.0}


def benchmark_models(
    models: Mapping[str, nn.Module],
    *,
    batch_sizes: Sequence[int] = (1, 32, 128),
    seq_lens: Sequence[int | None] = (None, 128, 512),
    typical_seq_len: int,
    device: str | torch.device = "cpu",
    dtypes: Sequence[str] = ("float32",),
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    progress: bool = True,
    cells: Sequence[tuple[int, int | None]] | None = None,
    max_tokens: int | None = None,
    cell_time_budget_s: float | None = None,
    min_repeats: int = 3,
    onnxruntime: bool | Sequence[str] = False,
    runtimes: Sequence[str] = (),
    tokenizer: Any | None = None,
    calibration_texts: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``models`` (the first is the baseline) over a grid of (dtype, batch, seq_len) cells.

    Every model gets the same random token ids (seeded, ids in [1, vocab), attention mask all
    ones) of shape (batch, seq_len). Per cell: each model is warmed up (``warmup`` runs), then
    ``repeats`` timed runs alternate between models round-robin (the starting model rotates),
    under ``torch.inference_mode()``, with ``torch.cuda.synchronize()`` before and after each
    timed run on GPU. float16/bfloat16 run on a cast copy of each model (GPU; bfloat16 also on
    CPU, float16 skipped on CPU with a note). ``threads`` sets ``torch.set_num_threads`` for
    the run (restored afterwards). ``onnxruntime=True`` (or a list of model names) also exports
    those models to ONNX and times them with onnxruntime (CPU, float32 only) as
    ``"<name> (onnxruntime)"``. ``runtimes`` (``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8``:
    CPU; ``torch-compile``: any device, CUDA graphs on a GPU) adds each PyTorch model as served,
    ``"<name> (onnx-int8)"`` (:mod:`~blockprune.bench.runtimes`); ``openvino-int8`` is calibrated on
    ``calibration_texts`` through ``tokenizer``.

    Returns a JSON-ready dict: ``environment``, ``settings``, ``baseline``, ``models`` (params,
    layout, FLOPs/token per seq_len), ``cells`` (per cell: status, note, repeats and per model:
    median/mean/min/p10/p90/q1/q3/iqr in ms, throughput in sequences/s and tokens/s, speed-up
    vs the baseline as a ratio of medians, FLOPs/token, params, analytic speed-up = baseline
    FLOPs / model FLOPs, measured_over_analytic), and ``notes``. See the module docstring
    for the default budgets.
    """
    if not models:
        raise ConfigError("benchmark_models needs at least one model (the first one is the baseline).")
    if typical_seq_len is None or int(typical_seq_len) < 1:
        raise ConfigError(f"typical_seq_len must be a positive integer, got {typical_seq_len!r}.")
    if warmup < 1 or repeats < 1 or min_repeats < 1:
        raise ConfigError(f"warmup, repeats and min_repeats must be >= 1 (got {warmup}, {repeats}, {min_repeats}).")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"benchmark device '{device}' requested but CUDA is not available; use device=cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"benchmark device '{device}' is not supported; use cpu or cuda[:N].")
    dtype_names = [normalise_dtype(d) for d in dtypes]
    max_tokens = DEFAULT_MAX_TOKENS[dev.type] if max_tokens is None else int(max_tokens)
    budget = DEFAULT_CELL_TIME_BUDGET_S[dev.type] if cell_time_budget_s is None else float(cell_time_budget_s)
    grid = resolve_cells(batch_sizes, seq_lens, int(typical_seq_len), cells)
    notes: list[str] = []

    with ExitStack() as stack:
        stack.enter_context(num_threads(threads))
        models = dict(models)
        if onnxruntime:
            models = onnxruntime_entries(models, onnxruntime, dev, stack, notes)
        if runtimes:  # exported graphs on CPU; torch-compile on any device
            wanted = runtimes if dev.type == "cpu" else [r for r in runtimes if r == "torch-compile"]
            models = runtime_entries(models, wanted, stack, tokenizer=tokenizer, calibration_texts=calibration_texts)
        names = list(models)
        baseline = names[0]
        info = model_info(models, sorted({c["seq_len"] for c in grid}))
        vocab = min((v for v in (vocab_size(m) for m in models.values()) if v), default=None)
        if vocab is None:
            raise BlockpruneError("Cannot tell the vocabulary size of any model; benchmark needs a transformers model.")
        max_len = min((v for v in (max_positions(m) for m in models.values()) if v), default=None)
        plan = CellPlan(names, info, dev, vocab, max_len, max_tokens, budget, warmup, repeats, min_repeats, seed)

        result: dict[str, Any] = {
            "schema": SCHEMA,
            "environment": environment(dev),
            "settings": {
                "device": str(dev),
                "dtypes": dtype_names,
                "batch_sizes": list(batch_sizes) if cells is None else None,
                "seq_lens": list(seq_lens) if cells is None else None,
                "cells": [[c["batch"], c["seq_len"]] for c in grid],
                "typical_seq_len": int(typical_seq_len),
                "warmup": warmup,
                "repeats": repeats,
                "min_repeats": min_repeats,
                "max_tokens": max_tokens,
                "cell_time_budget_s": budget,
                "threads": torch.get_num_threads(),
                "calibration_texts": len(calibration_texts),
                "seed": seed,
                "inputs": "random token ids in [1, vocab), attention mask all ones",
                "timing": "round-robin interleaved runs, torch.inference_mode, median of repeats",
            },
            "baseline": baseline,
            "models": info,
            "cells": [],
            "notes": notes,
        }

        from tqdm.auto import tqdm

        bar = stack.enter_context(
            tqdm(total=len(dtype_names) * len(grid), desc="benchmark", unit="cell", disable=not progress)
        )
        for dtype in dtype_names:
            skip, note = dtype_skip_reason(dtype, dev)
            if note:
                notes.append(note)
            if skip:
                notes.append(skip)
                for cell in grid:
                    result["cells"].append(skipped_cell(dev, dtype, cell, skip))
                    bar.update(1)
                continue
            ready, per_model_skip = prepare_all(models, dev, dtype)
            try:
                for cell in grid:
                    bar.set_postfix_str(f"{dtype} b={cell['batch']} n={cell['seq_len']}")
                    result["cells"].append(run_cell(plan, ready, per_model_skip, cell, dtype))
                    bar.update(1)
            finally:
                release_all(ready, dev)
    return result
