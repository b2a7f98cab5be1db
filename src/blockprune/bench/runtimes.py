"""Deployment runtimes as benchmark entries: each PyTorch model also in onnxruntime float32 and
int8, in OpenVINO (its own precision, or NNCF int8), and through ``torch.compile``.

``torch`` float32 / bfloat16 are the benchmark's own dtypes (``dtypes=["float32", "bfloat16"]``);
the exported runtimes are written here exactly as ``blockprune export`` writes them
(:mod:`blockprune.deploy`), and timed through the ``onnxruntime`` and ``openvino`` runners.
``torch-compile`` entries are compiled per cell by their runner, at the cell's dtype and device:
inductor kernels on CPU, and on CUDA one CUDA graph per shape (``mode="reduce-overhead"``), the
launch-free path for a small model whose eager forward pass is mostly kernel launches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blockprune.bench.runners import backend_of
from blockprune.errors import ConfigError

#: Runtimes that become extra entries (the torch ones are dtypes of the PyTorch entries).
ENTRY_RUNTIMES = ("onnx", "onnx-int8", "openvino", "openvino-int8", "torch-compile")
#: Entry runtimes that are exported graphs, run on CPU only.
EXPORTED_RUNTIMES = ("onnx", "onnx-int8", "openvino", "openvino-int8")


class RuntimeModule(nn.Module):
    """A deploy runtime (``logits(batch)``) dressed as a classifier module for the benchmark;
    ``flops_model`` (the PyTorch source) gives FLOPs and parameters and is not a submodule.
    ``runtime=None``: an entry its runner builds per cell from ``flops_model`` (``torch-compile``)."""

    def __init__(self, runtime: Any, backend: str, flops_model: nn.Module):
        super().__init__()
        self.runtime, self.backend = runtime, backend
        object.__setattr__(self, "flops_model", flops_model)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_: Any):
        from transformers.modeling_outputs import SequenceClassifierOutput

        batch = {"input_ids": input_ids.cpu().numpy()}
        if attention_mask is not None:
            batch["attention_mask"] = attention_mask.cpu().numpy()
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids.cpu().numpy()
        return SequenceClassifierOutput(logits=torch.from_numpy(self.runtime.logits(batch)))

    def __deepcopy__(self, memo):  # compiled runtimes cannot be copied; the benchmark never needs a copy
        return self


def runtime_entries(
    models: Mapping[str, nn.Module],
    runtimes: Sequence[str],
    stack: ExitStack,
    *,
    tokenizer: Any | None = None,
    int8: Mapping[str, Any] | None = None,
    calibration_texts: Sequence[str] = (),
) -> dict[str, nn.Module]:
    """``models`` with a ``"<name> (<runtime>)"`` entry after each PyTorch one, for every runtime in
    ``runtimes`` (``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8``, ``torch-compile``); exported
    files go to a temporary folder that ``stack`` removes. ``openvino-int8`` calibrates its activations
    on ``calibration_texts`` tokenised by ``tokenizer`` (training texts: int8 speed does not depend on
    them much, its accuracy does, and the benchmark feeds random ids)."""
    from blockprune.deploy.runtimes import check_runtimes, export_runtime, open_runtime

    wanted = [r for r in runtimes if r not in ("torch", "torch-bf16")]
    unknown = [r for r in wanted if r not in ENTRY_RUNTIMES]
    if unknown:
        raise ConfigError(
            f"benchmark runtimes {unknown} are not supported; use {list(ENTRY_RUNTIMES)} "
            "(torch float32 / bfloat16: dtypes=[float32, bfloat16])."
        )
    exported = [r for r in wanted if r in EXPORTED_RUNTIMES]
    check_runtimes(exported)  # an optional package that is missing: the error names the extra
    if "openvino-int8" in exported and (tokenizer is None or not calibration_texts):
        raise ConfigError(
            'benchmark runtime "openvino-int8" calibrates int8 on training texts and needs them with the '
            "models' tokenizer. Fix: blockprune bench BASELINE MODELS --runtimes openvino-int8 --calibration FILE"
        )
    if not wanted:
        return dict(models)
    if exported:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blockprune-runtimes-")))
    out: dict[str, nn.Module] = {}
    for i, (name, model) in enumerate(models.items()):
        out[name] = model
        if backend_of(model) != "pytorch":
            continue
        if "torch-compile" in wanted:
            out[f"{name} (torch-compile)"] = RuntimeModule(None, "torch-compile", model)
        for runtime in exported:  # written exactly as `blockprune export` writes them
            folder = tmp / str(i)
            export_runtime(model, tokenizer, folder, runtime, int8=int8, calibration_texts=calibration_texts)
            backend = "openvino" if runtime.startswith("openvino") else "onnxruntime"
            entry = RuntimeModule(open_runtime(runtime, folder), backend, model)
            out[f"{name} ({runtime})"] = entry
    return out
