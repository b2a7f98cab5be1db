"""ONNX export of (compacted) classifiers, a round-trip check, and an onnxruntime wrapper.

The exported graph is plain ONNX (opset 17 by default): inputs ``input_ids``,
``attention_mask`` (+ ``token_type_ids`` when the model uses them), int64, shape
(batch, sequence) with both axes dynamic; output ``logits`` (batch, num_labels), float32.
It runs in onnxruntime alone -- neither torch nor blockprune is needed to serve it.
Compacted models (different numbers of heads / FFN widths per layer) export as is: BERT's
attention reshapes with ``(..., -1, head_size)``, so each layer's width is baked into its
own weights.

Exporters (``exporter=``): ``"torchscript"`` (the legacy ``torch.onnx.export(dynamo=False)``;
fast, native opset 17, also handles a layer with zero heads), ``"dynamo"``
(``torch.export``-based; slower, produces opset 18 and down-converts) and ``"auto"`` (the
default: torchscript, falling back to dynamo if it fails or does not verify).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blockprune.atomic import atomic_path, check_output
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.models import model_max_length

#: Max abs logit difference accepted between PyTorch and onnxruntime in float32.
FLOAT32_TOLERANCE = 1e-4
_EXPORTERS = ("auto", "torchscript", "dynamo")


class _LogitsOnly(nn.Module):
    """input_ids, attention_mask in; logits out (what the ONNX graph exposes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def _logits(self, **inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(**inputs)
        return out.logits if hasattr(out, "logits") else out[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._logits(input_ids=input_ids, attention_mask=attention_mask)


class _LogitsOnlyWithTypes(_LogitsOnly):
    """As :class:`_LogitsOnly`, plus token_type_ids."""

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self._logits(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def _cpu_float32(model: nn.Module) -> nn.Module:
    params = list(model.parameters())
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def _uses_token_type_ids(model: nn.Module, tokenizer: Any | None) -> bool:
    if tokenizer is not None and getattr(tokenizer, "model_input_names", None):
        return "token_type_ids" in tokenizer.model_input_names
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", model)
    has_embedding = getattr(getattr(base, "embeddings", None), "token_type_embeddings", None) is not None
    return has_embedding and (getattr(config, "type_vocab_size", 0) or 0) > 0


def _max_len(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    return model_max_length(model) if getattr(config, "max_position_embeddings", None) else 512


def _vocab(model: nn.Module) -> int:
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if emb is None:
        raise BlockpruneError(
            f"{type(model).__name__} has no input embeddings; export_onnx needs a transformers classifier."
        )
    return int(emb.num_embeddings)


def _example_inputs(model: nn.Module, names: list[str], batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids (not zeros) and a mask with padding in row 0, so no mask path is traced away."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, _vocab(model), (batch, seq), generator=gen)
    mask = torch.ones_like(ids)
    if seq >= 2:
        mask[0, max(1, seq - seq // 3) :] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        out["token_type_ids"] = torch.zeros_like(ids)
    return {k: out[k] for k in names}


def _export_torchscript(wrapper, args, path, names, opset, dynamic):
    axes = {n: {0: "batch", 1: "sequence"} if dynamic else {0: "batch"} for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DeprecationWarning (legacy exporter), TracerWarnings
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _export_dynamo(wrapper, args, path, names, opset, dynamic, max_len):
    batch = torch.export.Dim("batch", max=1 << 16)
    seq = torch.export.Dim("sequence", max=max_len)
    shapes = tuple({0: batch, 1: seq} if dynamic else {0: batch} for _ in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=names,
            output_names=["logits"],
            opset_version=opset,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def _ort_session(path: str | os.PathLike, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BlockpruneError("onnxruntime is not installed; install blockprune[onnx].") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting worker threads: they would steal CPU from models timed right after
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_diff(model: nn.Module, session, inputs: Mapping[str, torch.Tensor]) -> float:
    wanted = [i.name for i in session.get_inputs()]
    feeds = {}
    for name in wanted:
        if name in inputs:
            feeds[name] = inputs[name].detach().cpu().numpy().astype(np.int64)
        elif name == "token_type_ids":
            feeds[name] = np.zeros_like(inputs["input_ids"].detach().cpu().numpy(), dtype=np.int64)
        else:
            raise BlockpruneError(f"The ONNX model needs input '{name}', which the check batch lacks ({list(inputs)}).")
    got = session.run(["logits"], feeds)[0]
    torch_inputs = {k: v.detach().cpu() for k, v in inputs.items() if k in wanted}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(**torch_inputs)
    finally:
        model.train(was_training)
    want = (out.logits if hasattr(out, "logits") else out[0]).float().numpy()
    if got.shape != want.shape:
        raise BlockpruneError(f"ONNX logits have shape {got.shape}, PyTorch {want.shape}.")
    return float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())


def _metadata(model: nn.Module, names: list[str], exporter: str, max_len: int) -> dict[str, str]:
    meta = {"producer": "blockprune", "exporter": exporter, "inputs": json.dumps(names), "max_seq_len": str(max_len)}
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "id2label", None):
        meta["id2label"] = json.dumps({str(k): v for k, v in config.id2label.items()}, ensure_ascii=False)
    try:
        from blockprune.flops import encoder_layout

        layout = encoder_layout(model)
        meta["heads_per_layer"] = json.dumps([x["heads"] for x in layout])
        meta["ffn_per_layer"] = json.dumps([x["ffn"] for x in layout])
    except BlockpruneError:
        pass
    return meta


def _add_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def export_onnx(
    model: nn.Module,
    tokenizer: Any | None,
    out_path: str | os.PathLike,
    *,
    opset: int = 17,
    seq_len_dynamic: bool = True,
    seq_len: int | None = None,
    exporter: str = "auto",
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Export a sequence classifier to ONNX at ``out_path`` (written atomically); return the path.

    Inputs are ``input_ids``, ``attention_mask`` and, if the tokenizer produces them (or, with
    no tokenizer, if the model has token-type embeddings), ``token_type_ids``; output is
    ``logits``. Batch is always dynamic; the sequence axis too unless ``seq_len_dynamic=False``,
    in which case the graph is fixed to ``seq_len`` (default: the model's maximum length).
    The graph carries metadata (id2label, per-layer heads / FFN widths, exporter). With
    ``verify`` the file is run in onnxruntime and compared with PyTorch (max abs logit
    difference <= 1e-4) before it is moved into place.
    """
    if exporter not in _EXPORTERS:
        raise ConfigError(f"export exporter '{exporter}' is not supported; use one of {list(_EXPORTERS)}.")
    src = _cpu_float32(model)
    was_training = src.training
    src.eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if _uses_token_type_ids(src, tokenizer) else [])
    max_len = _max_len(src)
    if seq_len is None:
        seq_len = min(16, max_len) if seq_len_dynamic else max_len
    if not 1 <= seq_len <= max_len:
        raise ConfigError(f"export seq_len must be between 1 and the model's maximum length {max_len}, got {seq_len}.")
    example = _example_inputs(src, names, batch=2, seq=seq_len)
    wrapper = (_LogitsOnlyWithTypes if "token_type_ids" in names else _LogitsOnly)(src).eval()
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    out = Path(out_path)
    check_output(out, None, overwrite)  # a folder at out_path is never replaced without overwrite
    try:
        for name in order:
            try:
                with atomic_path(out, overwrite=overwrite) as tmp:
                    if name == "torchscript":
                        _export_torchscript(wrapper, tuple(example.values()), tmp, names, opset, seq_len_dynamic)
                    else:
                        _export_dynamo(wrapper, tuple(example.values()), tmp, names, opset, seq_len_dynamic, max_len)
                    _add_metadata(tmp, _metadata(src, names, name, max_len))
                    if verify:
                        session = _ort_session(tmp)
                        checks = [example]
                        if seq_len_dynamic and max_len > 3:
                            other_len = max(2, min(max_len, seq_len // 2 + 3))
                            checks.append(_example_inputs(src, names, batch=3, seq=other_len, seed=1))
                        diff = max(_max_diff(src, session, c) for c in checks)
                        if not diff <= FLOAT32_TOLERANCE:
                            raise BlockpruneError(
                                f"onnxruntime logits differ from PyTorch by {diff:.2e} (> {FLOAT32_TOLERANCE})"
                            )
                return out
            except Exception as err:  # noqa: BLE001 - try the next exporter, report all failures
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                errors.append(f"{name}: {type(err).__name__}: {first}")
    finally:
        src.train(was_training)
    raise BlockpruneError(f"ONNX export of {type(model).__name__} to {out} failed: " + "; ".join(errors))


def check_onnx(
    model: nn.Module,
    onnx_path: str | os.PathLike,
    batch: int | Mapping[str, torch.Tensor] = 4,
    *,
    seq_len: int = 16,
    seed: int = 0,
) -> float:
    """Max abs logit difference between PyTorch (float32, CPU) and onnxruntime.

    ``batch`` is either a number of random sequences of ``seq_len`` tokens (row 0 padded) or
    a tokenizer output (mapping with ``input_ids``, ``attention_mask``, ...). Should be <= 1e-4.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise BlockpruneError(f"ONNX file {path} does not exist.")
    src = _cpu_float32(model)
    session = _ort_session(path)
    if isinstance(batch, Mapping):
        inputs = {k: torch.as_tensor(v) for k, v in batch.items()}
    else:
        names = [i.name for i in session.get_inputs()]
        inputs = _example_inputs(src, names, batch=int(batch), seq=seq_len, seed=seed)
    return _max_diff(src, session, inputs)


class OnnxRuntimeClassifier(nn.Module):
    """An onnxruntime session dressed as a classifier module, so it can be benchmarked.

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` returns an object with
    ``.logits`` (a CPU float32 tensor). ``flops_model`` (optional, the PyTorch source model) is
    used by the benchmark for FLOPs/params; it is not registered as a submodule.
    """

    backend = "onnxruntime"

    def __init__(
        self, onnx_path: str | os.PathLike, *, threads: int | None = None, flops_model: nn.Module | None = None
    ):
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.session = _ort_session(self.onnx_path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        object.__setattr__(self, "flops_model", flops_model)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_: Any):
        from transformers.modeling_outputs import SequenceClassifierOutput

        ids = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        given = {"input_ids": ids}
        given["attention_mask"] = (
            np.ones_like(ids)
            if attention_mask is None
            else attention_mask.detach().cpu().numpy().astype(np.int64, copy=False)
        )
        given["token_type_ids"] = (
            np.zeros_like(ids)
            if token_type_ids is None
            else token_type_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        )
        logits = self.session.run(["logits"], {n: given[n] for n in self.input_names})[0]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def __deepcopy__(self, memo):  # sessions cannot be copied; the benchmark never needs a copy
        return self
