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
"""

from __future__ import annotations

import copy
import datetime as _dt
import importlib.metadata
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blockprune.atomic import write_json
from blockprune.models import model_max_length
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.flops import count_parameters, encoder_layout, flops_per_token

SCHEMA = "blockprune.benchmark/1"
OVERHEAD_SCHEMA = "blockprune.training_overhead/1"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
DEFAULT_MAX_TOKENS = {"cpu": 4096, "cuda": 65536}
DEFAULT_CELL_TIME_BUDGET_S = {"cpu": 120.0, "cuda": 60.0}


# --------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, hardware and thread settings that a timing depends on."""
    dev = torch.device(device)
    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "onnxruntime": _version("onnxruntime"),
        "blockprune": _version("blockprune"),
        "device": str(dev),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": _safe(lambda: torch.backends.cpu.get_cpu_capability()),
    }
    if dev.type == "cuda":
        env.update(
            device_name=torch.cuda.get_device_name(dev),
            cuda=torch.version.cuda,
            cudnn=_safe(torch.backends.cudnn.version),
            gpu_memory_gb=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1),
        )
    else:
        env["device_name"] = env["cpu"]
    return env


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - purely informational
        return None


# --------------------------------------------------------------------------- helpers


@contextmanager
def _num_threads(threads: int | None):
    old = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1 (or None to keep {old}), got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
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


def _is_onnxruntime(model: nn.Module) -> bool:
    return getattr(model, "backend", "pytorch") == "onnxruntime"


def _analytic_model(model: nn.Module) -> nn.Module | None:
    """The PyTorch model whose shapes give FLOPs/params (an ONNX wrapper points to its source)."""
    return getattr(model, "flops_model", None) if _is_onnxruntime(model) else model


def _vocab_size(model: nn.Module) -> int | None:
    src = _analytic_model(model)
    if src is None:
        return getattr(model, "vocab_size", None)
    get = getattr(src, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    return int(emb.num_embeddings) if emb is not None else getattr(getattr(src, "config", None), "vocab_size", None)


def _max_positions(model: nn.Module) -> int | None:
    src = _analytic_model(model)
    config = getattr(src, "config", None)
    if config is None or getattr(config, "max_position_embeddings", None) is None:
        return None
    return model_max_length(src)


def normalise_dtype(name: str) -> str:
    key = str(name).replace("torch.", "")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in _DTYPES:
        raise ConfigError(f"benchmark dtype '{name}' is not supported; use one of {sorted(_DTYPES)}.")
    return key


def _dtype_skip_reason(dtype: str, device: torch.device) -> tuple[str | None, str | None]:
    """(reason to skip, note) for running ``dtype`` on ``device``."""
    if device.type == "cpu":
        if dtype == "float16":
            return "float16 is skipped on CPU (no fast kernels; not a CPU deployment format).", None
        if dtype == "bfloat16":
            try:
                torch.nn.functional.linear(torch.ones(2, 4, dtype=torch.bfloat16), torch.ones(3, 4, dtype=torch.bfloat16))
            except RuntimeError as err:
                return f"bfloat16 is not supported by this CPU build: {err}", None
            native = _safe(lambda: torch.cpu._is_avx512_bf16_supported()) or _safe(
                lambda: torch.cpu._is_amx_tile_supported()
            )
            return None, (None if native else "this CPU has no native bfloat16 instructions: bfloat16 is emulated (slow).")
        return None, None
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return f"bfloat16 is not supported by {torch.cuda.get_device_name(device)}.", None
    return None, None


def _resolve_cells(
    batch_sizes: Iterable[int],
    seq_lens: Iterable[int | None],
    typical_seq_len: int,
    cells: Iterable[tuple[int, int | None]] | None,
) -> list[dict[str, Any]]:
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


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


# --------------------------------------------------------------------------- benchmark


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
    ``"<name> (onnxruntime)"``.

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
    grid = _resolve_cells(batch_sizes, seq_lens, int(typical_seq_len), cells)
    notes: list[str] = []

    with ExitStack() as stack:
        stack.enter_context(_num_threads(threads))
        models = dict(models)
        if onnxruntime:
            models = _add_onnxruntime_entries(models, onnxruntime, dev, stack, notes)
        names = list(models)
        baseline = names[0]
        model_info = _model_info(models, sorted({c["seq_len"] for c in grid}))
        vocab = min((v for v in (_vocab_size(m) for m in models.values()) if v), default=None)
        if vocab is None:
            raise BlockpruneError("Cannot tell the vocabulary size of any model; benchmark needs a transformers model.")
        max_len = min((v for v in (_max_positions(m) for m in models.values()) if v), default=None)

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
                "seed": seed,
                "inputs": "random token ids in [1, vocab), attention mask all ones",
                "timing": "round-robin interleaved runs, torch.inference_mode, median of repeats",
            },
            "baseline": baseline,
            "models": model_info,
            "cells": [],
            "notes": notes,
        }

        from tqdm.auto import tqdm

        bar = tqdm(total=len(dtype_names) * len(grid), desc="benchmark", unit="cell", disable=not progress)
        try:
            for dtype in dtype_names:
                skip, note = _dtype_skip_reason(dtype, dev)
                if note:
                    notes.append(note)
                if skip:
                    notes.append(skip)
                    for cell in grid:
                        result["cells"].append(_skipped_cell(dev, dtype, cell, skip))
                        bar.update(1)
                    continue
                prepared, per_model_skip = _prepare(models, dev, dtype)
                try:
                    for cell in grid:
                        bar.set_postfix_str(f"{dtype} b={cell['batch']} n={cell['seq_len']}")
                        result["cells"].append(
                            _run_cell(
                                prepared, per_model_skip, baseline, names, model_info, cell, dev, dtype,
                                vocab=vocab, max_len=max_len, max_tokens=max_tokens, budget=budget,
                                warmup=warmup, repeats=repeats, min_repeats=min_repeats, seed=seed,
                            )
                        )
                        bar.update(1)
                finally:
                    _release(prepared, models, dev)
        finally:
            bar.close()
    return result


def _add_onnxruntime_entries(models, which, dev, stack: ExitStack, notes: list[str]) -> dict[str, nn.Module]:
    if dev.type != "cpu":
        notes.append("onnxruntime entries are CPU-only; skipped on this device.")
        return models
    from blockprune.export import OnnxRuntimeClassifier, export_onnx

    selected = list(models) if which is True else list(which)
    unknown = [n for n in selected if n not in models]
    if unknown:
        raise ConfigError(f"onnxruntime: unknown model names {unknown}; known: {list(models)}.")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blockprune-onnx-")))
    out: dict[str, nn.Module] = {}
    for i, (name, model) in enumerate(models.items()):
        out[name] = model
        if name in selected and not _is_onnxruntime(model):
            path = export_onnx(model, None, tmp / f"model{i}.onnx")
            out[f"{name} (onnxruntime)"] = OnnxRuntimeClassifier(path, flops_model=model)
    return out


def _model_info(models: Mapping[str, nn.Module], seq_lens: list[int]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for name, model in models.items():
        src = _analytic_model(model)
        entry: dict[str, Any] = {
            "backend": "onnxruntime" if _is_onnxruntime(model) else "pytorch",
            "class": type(src if src is not None else model).__name__,
        }
        try:
            if src is None:
                raise BlockpruneError("no PyTorch model to read shapes from")
            layout = encoder_layout(src)
            entry["parameters"] = count_parameters(src)
            entry["heads_per_layer"] = [x["heads"] for x in layout]
            entry["ffn_per_layer"] = [x["ffn"] for x in layout]
            entry["head_dim"] = layout[0]["head_dim"] if layout else None
            entry["flops_per_token"] = {str(n): flops_per_token(src, n)["total"] for n in seq_lens}
        except BlockpruneError as err:
            entry["parameters"] = {"total": sum(p.numel() for p in model.parameters())}
            entry["flops_per_token"] = None
            entry["note"] = f"no analytic FLOPs: {err}"
        info[name] = entry
    return info


def _prepare(models: Mapping[str, nn.Module], dev: torch.device, dtype: str):
    """Models ready to time at ``dtype`` on ``dev`` (cast copies where needed) + per-model skips."""
    prepared: dict[str, tuple[nn.Module, bool]] = {}  # name -> (module, was_training)
    skips: dict[str, str] = {}
    target = _DTYPES[dtype]
    for name, model in models.items():
        if _is_onnxruntime(model):
            if dev.type != "cpu" or dtype != "float32":
                skips[name] = "onnxruntime entries run on CPU in float32 only."
            else:
                prepared[name] = (model, model.training)
            continue
        params = list(model.parameters())
        in_place = all(p.device == dev and p.dtype == target for p in params)
        if in_place:
            prepared[name] = (model, model.training)
            model.eval()
        else:
            prepared[name] = (copy.deepcopy(model).to(device=dev, dtype=target).eval(), False)
    return prepared, skips


def _release(prepared, originals: Mapping[str, nn.Module], dev: torch.device) -> None:
    for name, (module, was_training) in prepared.items():
        if module is originals.get(name):
            module.train(was_training)
    prepared.clear()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _skipped_cell(dev, dtype, cell, note) -> dict[str, Any]:
    return {"device": str(dev), "dtype": dtype, **cell, "status": "skipped", "note": note, "repeats": 0, "results": {}}


def _run_cell(
    prepared, per_model_skip, baseline, names, model_info, cell, dev, dtype,
    *, vocab, max_len, max_tokens, budget, warmup, repeats, min_repeats, seed,
) -> dict[str, Any]:
    batch, seq = cell["batch"], cell["seq_len"]
    if max_len is not None and seq > max_len:
        return _skipped_cell(dev, dtype, cell, f"seq_len {seq} > the models' maximum input length {max_len}.")
    if batch * seq > max_tokens:
        return _skipped_cell(
            dev, dtype, cell, f"batch x seq_len = {batch * seq} tokens > max_tokens={max_tokens} (raise max_tokens to run it)."
        )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq), generator=gen).to(dev)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    active = [n for n in names if n in prepared]
    notes = [f"{n}: {per_model_skip[n]}" for n in names if n in per_model_skip]

    def run_once(name: str) -> float:
        module = prepared[name][0]
        if sync:
            sync()
        t0 = time.perf_counter()
        module(input_ids=ids, attention_mask=mask)
        if sync:
            sync()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {n: [] for n in active}
    peak_mb: dict[str, float | None] = dict.fromkeys(active)
    try:
        with torch.inference_mode():
            first = {}
            for name in active:  # one run each first: the cost estimate for the time budget
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                first[name] = run_once(name)
            round_s = sum(first.values())
            if round_s * (warmup - 1 + min_repeats) > 2 * budget:
                return _skipped_cell(
                    dev, dtype, cell,
                    f"one round of all models took {round_s:.1f} s; warm-up + {min_repeats} repeats would exceed "
                    f"the cell time budget ({budget:.0f} s; raise cell_time_budget_s to run it).",
                )
            last = dict(first)
            for name in active:
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                for _ in range(warmup - 1):
                    last[name] = run_once(name)
                if dev.type == "cuda":
                    peak_mb[name] = torch.cuda.max_memory_allocated(dev) / 2**20
            round_s = sum(last.values())
            n_rep = repeats
            if round_s * repeats > budget:
                n_rep = max(min_repeats, min(repeats, int(budget / max(round_s, 1e-9))))
                notes.append(f"repeats reduced from {repeats} to {n_rep} to fit the cell time budget ({budget:.0f} s).")
            for r in range(n_rep):
                k = r % len(active)
                for name in active[k:] + active[:k]:
                    times[name].append(run_once(name))
    except Exception as err:  # noqa: BLE001 - out of memory is a skip, anything else a bug
        if not _is_oom(err):
            raise
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return _skipped_cell(dev, dtype, cell, f"out of memory: {str(err).splitlines()[0][:200]}")

    results: dict[str, Any] = {}
    base_stats = _stats_ms(times[baseline]) if baseline in times else None
    base_flops = _flops_at(model_info, baseline, seq)
    for name in names:
        if name not in times:
            results[name] = {"status": "skipped", "note": per_model_skip.get(name)}
            continue
        st = _stats_ms(times[name])
        med_s = st["median_ms"] / 1e3
        flops = _flops_at(model_info, name, seq)
        speedup = base_stats["median_ms"] / st["median_ms"] if base_stats else None
        analytic = base_flops / flops if (base_flops and flops) else None
        results[name] = {
            "status": "ok",
            **st,
            "throughput_seq_per_s": batch / med_s,
            "throughput_tokens_per_s": batch * seq / med_s,
            "speedup": 1.0 if name == baseline else speedup,
            "flops_per_token": flops,
            "params": model_info[name]["parameters"]["total"],
            "analytic_speedup": analytic,
            "measured_over_analytic": (speedup / analytic) if (speedup and analytic) else None,
            "achieved_gflops_per_s": (flops * batch * seq / med_s / 1e9) if flops else None,
            "peak_memory_mb": peak_mb.get(name),
        }
    return {
        "device": str(dev),
        "dtype": dtype,
        **cell,
        "status": "ok",
        "note": " ".join(notes) or None,
        "repeats": len(next(iter(times.values()))) if times else 0,
        "results": results,
    }


def _flops_at(model_info, name, seq) -> float | None:
    table = model_info[name].get("flops_per_token")
    return table.get(str(seq)) if table else None


# --------------------------------------------------------------------------- training-step overhead


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

    def once(fn) -> float:
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    from tqdm.auto import tqdm

    names = list(steps)
    for name in names:
        for _ in range(warmup):
            once(steps[name])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in tqdm(range(repeats), desc="training steps", disable=not progress):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(once(steps[name]))
    stats = {n: _stats_ms(t) for n, t in times.items()}
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


# --------------------------------------------------------------------------- reporting


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "–"
    return format(x, spec)


def _fmt_count(n: float | None) -> str:
    if n is None:
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def to_markdown(result: Mapping[str, Any]) -> str:
    """Readable Markdown tables for a :func:`benchmark_models` or :func:`training_step_overhead` result."""
    if result.get("schema") == OVERHEAD_SCHEMA:
        return _overhead_markdown(result)
    env, settings = result["environment"], result["settings"]
    lines = [
        "# Inference benchmark",
        "",
        f"- date: {env['date']}",
        f"- device: {env['device']} ({env.get('device_name')}), torch {env['torch']}, "
        f"transformers {env.get('transformers')}, threads {settings['threads']} (cpu_count {env.get('cpu_count')})",
        f"- warm-up {settings['warmup']}, repeats {settings['repeats']} (interleaved round-robin), "
        f"typical seq_len {settings['typical_seq_len']}, baseline **{result['baseline']}**",
        "",
        "## Models",
        "",
        "| model | backend | params | encoder params | heads per layer | FFN width per layer |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, info in result["models"].items():
        p = info.get("parameters", {})
        lines.append(
            f"| {name} | {info['backend']} | {_fmt_count(p.get('total'))} | {_fmt_count(p.get('encoder'))} | "
            f"{_join(info.get('heads_per_layer'))} | {_join(info.get('ffn_per_layer'))} |"
        )
    ok = [c for c in result["cells"] if c["status"] == "ok"]
    if ok:
        names = list(result["models"])
        lines += ["", "## Speed-up vs baseline (ratio of median latencies; analytic in brackets)", ""]
        lines.append("| dtype | batch | seq_len | " + " | ".join(names) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(names))
        for c in ok:
            row = []
            for n in names:
                r = c["results"].get(n, {})
                row.append(
                    f"{_fmt(r.get('speedup'))}× ({_fmt(r.get('analytic_speedup'))}×)" if r.get("status") == "ok" else "–"
                )
            seq = f"{c['seq_len']}{' (typical)' if c.get('typical') else ''}"
            lines.append(f"| {c['dtype']} | {c['batch']} | {seq} | " + " | ".join(row) + " |")
    for c in ok:
        seq = f"{c['seq_len']}{' (typical)' if c.get('typical') else ''}"
        lines += [
            "",
            f"### {c['device']} {c['dtype']}, batch {c['batch']}, seq_len {seq}, {c['repeats']} repeats",
            "",
            "| model | median ms | p10–p90 ms | IQR ms | seq/s | speed-up | analytic speed-up | measured/analytic "
            "| FLOPs/token | GFLOP/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in c["results"].items():
            if r.get("status") != "ok":
                lines.append(f"| {name} | skipped: {r.get('note') or ''} | | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {_fmt(r['median_ms'], '.3f')} | {_fmt(r['p10_ms'], '.3f')}–{_fmt(r['p90_ms'], '.3f')} "
                f"| {_fmt(r['iqr_ms'], '.3f')} | {_fmt(r['throughput_seq_per_s'], '.1f')} | {_fmt(r['speedup'])}× "
                f"| {_fmt(r['analytic_speedup'])}× | {_fmt(r['measured_over_analytic'])} "
                f"| {_fmt_count(r['flops_per_token'])} | {_fmt(r['achieved_gflops_per_s'], '.1f')} |"
            )
        if c.get("note"):
            lines += ["", f"Note: {c['note']}"]
    skipped = [c for c in result["cells"] if c["status"] != "ok"]
    if skipped:
        lines += ["", "## Skipped cells", ""]
        lines += [f"- {c['dtype']} batch {c['batch']} × seq_len {c['seq_len']}: {c['note']}" for c in skipped]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in dict.fromkeys(result["notes"])]
    return "\n".join(lines) + "\n"


def _join(values) -> str:
    return "–" if not values else " ".join(str(v) for v in values)


def _overhead_markdown(result: Mapping[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Training-step overhead",
        "",
        f"- date: {env['date']}, device: {env['device']} ({env.get('device_name')}), torch {env['torch']}, "
        f"threads {env['torch_threads']}; {result['repeats']} interleaved repeats after {result['warmup']} warm-up",
        "",
        "| step | median ms | p10–p90 ms | × dense |",
        "|---|---:|---:|---:|",
    ]
    for name, st in result["steps"].items():
        lines.append(
            f"| {name} | {_fmt(st['median_ms'], '.2f')} | {_fmt(st['p10_ms'], '.2f')}–{_fmt(st['p90_ms'], '.2f')} "
            f"| {_fmt(result['ratio_vs_dense'][name])} |"
        )
    return "\n".join(lines) + "\n"


def save(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``result`` as JSON atomically (a reader never sees a half-written file)."""
    write_json(path, result)
    return Path(path)


def measure_speedup(model, dense_reference, seq_len: int, batch_size: int, device: str | None, dtype: str,
                    warmup: int, repeats: int) -> dict[str, Any]:
    """Latency of a job's final model and, for a pruned job, of the dense model it started from,
    timed alternately in the job's process (a speed-up depends only on the removed structure)."""
    models = {"dense": dense_reference, "final": model} if dense_reference is not None else {"final": model}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = benchmark_models(
        {k: m.eval() for k, m in models.items()}, batch_sizes=[batch_size], seq_lens=[None],
        typical_seq_len=seq_len, device=device, dtypes=[dtype], warmup=warmup, repeats=repeats,
    )
    cell = result["cells"][0]
    final = cell["results"]["final"]
    return {
        "speedup": final["speedup"] if dense_reference is not None else 1.0,
        "latency_ms": final["median_ms"],
        "dense_latency_ms": cell["results"]["dense"]["median_ms"] if dense_reference is not None else final["median_ms"],
        "measured_over_analytic": final.get("measured_over_analytic"),
        "batch_size": batch_size, "seq_len": seq_len, "device": device, "dtype": dtype,
        "environment": result["environment"],
    }
