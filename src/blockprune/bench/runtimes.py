"""Deployment runtimes as benchmark entries: each PyTorch model also in onnxruntime float32 and int8.

``torch`` float32 / bfloat16 are the benchmark's own dtypes (``dtypes=["float32", "bfloat16"]``);
the ONNX runtimes are exported here, exactly as ``blockprune export`` writes them
(:mod:`blockprune.deploy`), and timed through the ``onnxruntime`` runner.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from torch import nn

from blockprune.bench.runners import backend_of
from blockprune.errors import ConfigError

#: Runtimes that become extra entries (the torch ones are dtypes of the PyTorch entries).
ENTRY_RUNTIMES = ("onnx", "onnx-int8")


def runtime_entries(
    models: Mapping[str, nn.Module],
    runtimes: Sequence[str],
    stack: ExitStack,
    *,
    tokenizer: Any | None = None,
    int8: Mapping[str, Any] | None = None,
) -> dict[str, nn.Module]:
    """``models`` with a ``"<name> (<runtime>)"`` entry after each PyTorch one, for every runtime in
    ``runtimes`` (``onnx``, ``onnx-int8``); files go to a temporary folder that ``stack`` removes."""
    from blockprune.deploy.onnx_export import OnnxRuntimeClassifier, export_onnx
    from blockprune.deploy.quantize import quantize_int8
    from blockprune.deploy.runtimes import FILES

    wanted = [r for r in runtimes if r not in ("torch", "torch-bf16")]
    unknown = [r for r in wanted if r not in ENTRY_RUNTIMES]
    if unknown:
        raise ConfigError(
            f"benchmark runtimes {unknown} are not supported; use {list(ENTRY_RUNTIMES)} "
            "(torch float32 / bfloat16: dtypes=[float32, bfloat16])."
        )
    if not wanted:
        return dict(models)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blockprune-runtimes-")))
    out: dict[str, nn.Module] = {}
    for i, (name, model) in enumerate(models.items()):
        out[name] = model
        if backend_of(model) != "pytorch":
            continue
        fp32 = export_onnx(model, tokenizer, tmp / str(i) / FILES["onnx"])
        for runtime in wanted:
            path = fp32 if runtime == "onnx" else quantize_int8(fp32, tmp / str(i) / FILES[runtime], **dict(int8 or {}))
            out[f"{name} ({runtime})"] = OnnxRuntimeClassifier(path, flops_model=model)
    return out
