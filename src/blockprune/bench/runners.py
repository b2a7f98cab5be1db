"""Runners: how a model of one backend is made ready to time at a dtype on a device.

A benchmark entry is any module with a ``backend`` attribute (absent: ``"pytorch"``). Its runner
says whether it can run a (device, dtype) cell and, if so, returns a :class:`Ready`: one forward
pass as a call, and how to undo what preparing changed on the caller's model. Another runtime
is one more :func:`register` call (and, where its entries are built from PyTorch models, a
function like :func:`onnxruntime_entries`).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blockprune.bench.dtypes import DTYPES
from blockprune.errors import ConfigError


@dataclass
class Ready:
    """A model ready to time: ``run(input_ids, attention_mask)`` is one forward pass."""

    run: Callable[[torch.Tensor, torch.Tensor], Any]
    release: Callable[[], None] = lambda: None  # undo what preparing changed on the caller's model
    compiles: bool = False  # the first run of each shape compiles: the time budget is estimated from the next


@dataclass(frozen=True)
class Runner:
    backend: str
    prepare: Callable[[nn.Module, torch.device, str], Ready | str]  # a Ready, or why the cell is skipped


RUNNERS: dict[str, Runner] = {}


def register(runner: Runner) -> Runner:
    RUNNERS[runner.backend] = runner
    return runner


def backend_of(model: nn.Module) -> str:
    return getattr(model, "backend", "pytorch")


def _forward(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    return lambda ids, mask: module(input_ids=ids, attention_mask=mask)


def _prepare_pytorch(model: nn.Module, dev: torch.device, dtype: str) -> Ready:
    """The model itself in eval mode where it already is on ``dev`` in ``dtype``, else a cast copy."""
    target = DTYPES[dtype]
    if all(p.device == dev and p.dtype == target for p in model.parameters()):
        was_training = model.training
        model.eval()
        return Ready(_forward(model), lambda: model.train(was_training))
    return Ready(_forward(copy.deepcopy(model).to(device=dev, dtype=target).eval()))


def _prepare_cpu_graph(model: nn.Module, dev: torch.device, dtype: str) -> Ready | str:
    """An exported graph (onnxruntime, OpenVINO) runs as it was exported, on CPU: the float32 cells."""
    if dev.type != "cpu" or dtype != "float32":
        return f"{backend_of(model)} entries run on CPU in float32 only (their own precision inside)."
    return Ready(_forward(model))


def _prepare_compiled(entry: nn.Module, dev: torch.device, dtype: str) -> Ready | str:
    """``torch.compile`` of a copy of the entry's model at this cell's dtype and device, static shapes
    (the cell's warm-up calls compile): inductor on CPU; on CUDA ``mode="reduce-overhead"``, which
    replays each shape's forward pass as one CUDA graph instead of launching every kernel."""
    if dev.type == "cpu" and dtype == "float16":
        return "float16 is skipped on CPU (no fast kernels; not a CPU deployment format)."
    model = copy.deepcopy(entry.flops_model).to(device=dev, dtype=DTYPES[dtype]).eval()
    compiled = torch.compile(model, mode="reduce-overhead" if dev.type == "cuda" else None, dynamic=False)
    return Ready(_forward(compiled), compiles=True)


register(Runner("pytorch", _prepare_pytorch))
register(Runner("torch-compile", _prepare_compiled))
register(Runner("onnxruntime", _prepare_cpu_graph))
register(Runner("openvino", _prepare_cpu_graph))


def prepare_all(
    models: Mapping[str, nn.Module], dev: torch.device, dtype: str
) -> tuple[dict[str, Ready], dict[str, str]]:
    """Every model ready for ``dtype`` on ``dev``, and the reason for each one that is skipped."""
    ready: dict[str, Ready] = {}
    skips: dict[str, str] = {}
    for name, model in models.items():
        backend = backend_of(model)
        if backend not in RUNNERS:
            raise ConfigError(f"benchmark entry {name!r} has backend {backend!r}; known: {sorted(RUNNERS)}.")
        out = RUNNERS[backend].prepare(model, dev, dtype)
        if isinstance(out, str):
            skips[name] = out
        else:
            ready[name] = out
    return ready, skips


def release_all(ready: dict[str, Ready], dev: torch.device) -> None:
    for entry in ready.values():
        entry.release()
    ready.clear()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def onnxruntime_entries(
    models: Mapping[str, nn.Module], which: bool | Sequence[str], dev: torch.device, stack: ExitStack, notes: list[str]
) -> dict[str, nn.Module]:
    """``models`` with a ``"<name> (onnxruntime)"`` entry after each selected one (exported to a temp folder)."""
    if dev.type != "cpu":
        notes.append("onnxruntime entries are CPU-only; skipped on this device.")
        return dict(models)
    from blockprune.deploy.onnx_export import OnnxRuntimeClassifier, export_onnx

    selected = list(models) if which is True else list(which)
    unknown = [n for n in selected if n not in models]
    if unknown:
        raise ConfigError(f"onnxruntime: unknown model names {unknown}; known: {list(models)}.")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blockprune-onnx-")))
    out: dict[str, nn.Module] = {}
    for i, (name, model) in enumerate(models.items()):
        out[name] = model
        if name in selected and backend_of(model) == "pytorch":
            path = export_onnx(model, None, tmp / f"model{i}.onnx")
            out[f"{name} (onnxruntime)"] = OnnxRuntimeClassifier(path, flops_model=model)
    return out
