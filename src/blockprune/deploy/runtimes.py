"""The runtimes a saved classifier can be served in, behind one call: ``logits(batch) -> ndarray``.

=============  ===========================================================================
``torch``      PyTorch float32, eager (what training measures; the reference for the others)
``torch-bf16`` PyTorch with CPU bfloat16 autocast (fast where the CPU has AMX / AVX512-BF16)
``torch-int8`` PyTorch dynamic int8 (``torch.ao``; deprecated upstream, kept for comparison)
``onnx``       onnxruntime float32 on ``model.onnx`` in the model folder
``onnx-int8``  onnxruntime dynamic int8 on ``model_quantized.onnx`` in the model folder
``openvino``   OpenVINO CPU plugin on ``openvino_model.xml`` (converted from ``model.onnx``; runs in
               the plugin's default precision: bfloat16 on AMX / AVX512-BF16 CPUs; optional extra)
``openvino-    OpenVINO on ``openvino_model_int8.xml``: int8 by NNCF, activations calibrated on texts
int8``         of the training split (needs them: ``calibration_texts``; optional extra)
=============  ===========================================================================

The ONNX file names are the ones Optimum's ``ORTModelForSequenceClassification`` loads
(``model.onnx``; ``file_name="model_quantized.onnx"``), so an exported folder also serves there;
``openvino_model.xml`` is Optimum Intel's ``OVModelForSequenceClassification`` name.
A batch is a mapping of numpy int64 arrays (``input_ids``, ``attention_mask`` and, when the
tokenizer makes them, ``token_type_ids``), as a tokenizer returns with ``return_tensors="np"``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blockprune.atomic import OutputExistsError, check_output
from blockprune.errors import BlockpruneError, ConfigError

RUNTIMES = ("torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8", "openvino", "openvino-int8")
#: The file each exported runtime reads from (and ``export_runtime`` writes into) the model folder.
FILES = {
    "onnx": "model.onnx",
    "onnx-int8": "model_quantized.onnx",
    "openvino": "openvino_model.xml",
    "openvino-int8": "openvino_model_int8.xml",
}
#: Runtimes that need optional packages: the packages, and the extra that installs them.
OPTIONAL = {
    "openvino": (("openvino",), "blockprune[openvino]"),
    "openvino-int8": (("openvino", "nncf"), "blockprune[openvino]"),
}
#: Runtimes whose logits must equal PyTorch float32's (max abs difference <= 1e-4).
EXACT = ("torch", "onnx")


def check_runtimes(names: Sequence[str]) -> list[str]:
    """The names, validated (a typo is a ConfigError naming the choices)."""
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise ConfigError(f"unknown runtime(s) {unknown}; choose from {list(RUNTIMES)} (deploy.runtimes / --runtime).")
    for name in names:
        packages, extra = OPTIONAL.get(name, ((), ""))
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(
                f'runtime "{name}" needs the {" and ".join(missing)} package. Fix: pip install "{extra}".'
            )
    return list(dict.fromkeys(names))


class Runtime:
    """A classifier ready to serve: ``logits(batch)`` returns float32 (batch, labels)."""

    name = "runtime"

    def logits(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class TorchRuntime(Runtime):
    """PyTorch on CPU: float32, bfloat16 autocast, or dynamic int8 (a quantised copy)."""

    def __init__(self, model: nn.Module, name: str = "torch"):
        model = model.eval()
        if name == "torch-int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao deprecation notices
                model = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(model).float(), {nn.Linear}, dtype=torch.qint8
                )
        self.model, self.name = model, name
        self.input_names = _torch_input_names(model)

    def logits(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in batch.items() if k in self.input_names}
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if self.name == "torch-bf16" else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self.model(**inputs)
        return (out.logits if hasattr(out, "logits") else out[0]).float().numpy()


def _torch_input_names(model: nn.Module) -> set[str]:
    base = getattr(model, "base_model", model)
    types = getattr(getattr(base, "embeddings", None), "token_type_embeddings", None) is not None
    return {"input_ids", "attention_mask"} | ({"token_type_ids"} if types else set())


class OnnxRuntime(Runtime):
    """An onnxruntime CPU session over one of the model folder's ONNX files."""

    def __init__(self, path: str | os.PathLike, name: str = "onnx", threads: int | None = None):
        from blockprune.deploy.onnx_export import _ort_session

        self.path, self.name = Path(path), name
        if not self.path.is_file():
            raise BlockpruneError(
                f"{self.path} does not exist: runtime '{name}' needs it. "
                f"Fix: blockprune export {self.path.parent} --runtime {name}"
            )
        self.session = _ort_session(self.path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], int64_feeds(batch, self.input_names))[0]


def int64_feeds(batch: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The graph's inputs ``names`` from ``batch`` as int64; a missing mask is all ones, missing type ids zeros."""
    ids = np.asarray(batch["input_ids"], dtype=np.int64)
    feeds = {}
    for n in names:
        value = batch.get(n)
        if value is None:
            value = np.ones_like(ids) if n == "attention_mask" else np.zeros_like(ids)
        feeds[n] = np.asarray(value, dtype=np.int64)
    return feeds


def export_runtime(
    model: nn.Module,
    tokenizer: Any | None,
    model_dir: str | os.PathLike,
    name: str,
    *,
    int8: Mapping[str, Any] | None = None,
    calibration_texts: Sequence[str] = (),
    overwrite: bool = False,
) -> Path | None:
    """Write what runtime ``name`` needs into ``model_dir``; return the file (None: nothing to write).

    ``onnx-int8`` quantises and ``openvino`` converts ``model.onnx`` (exported first when missing,
    or older than the weights); ``int8`` passes options to :func:`blockprune.deploy.quantize.quantize_int8`;
    ``openvino-int8`` quantises the ONNX graph with NNCF, calibrated on ``calibration_texts``.
    An exported file already in the folder that blockprune did not write is replaced only with ``overwrite``.
    """
    check_runtimes([name])
    if name not in FILES:
        return None
    from blockprune.deploy.onnx_export import export_onnx
    from blockprune.deploy.quantize import quantize_int8

    folder = Path(model_dir)
    fp32 = folder / FILES["onnx"]
    weights = folder / "model.safetensors"
    stale = fp32.is_file() and weights.is_file() and fp32.stat().st_mtime < weights.stat().st_mtime
    if name == "onnx" or not fp32.is_file() or stale:
        check_own_onnx(fp32, overwrite)
        export_onnx(model, tokenizer, fp32, overwrite=overwrite)
    if name == "onnx":
        return fp32
    if name == "openvino":
        from blockprune.deploy.openvino_runtime import export_openvino

        return export_openvino(fp32, folder / FILES[name], overwrite)
    if name == "openvino-int8":
        from blockprune.deploy.openvino_runtime import quantize_openvino

        return quantize_openvino(fp32, folder / FILES[name], tokenizer, calibration_texts, overwrite=overwrite)
    check_own_onnx(folder / FILES[name], overwrite)
    return quantize_int8(fp32, folder / FILES[name], **dict(int8 or {}))


def check_own_onnx(path: Path, overwrite: bool = False) -> None:
    """Refuse to replace an ONNX file blockprune did not write (its metadata names no blockprune
    producer): a user's own export in a model folder (an Optimum one, say) is never lost."""
    check_output(path, None, overwrite)  # a folder there is refused
    if overwrite or not path.is_file():
        return
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception:  # noqa: BLE001 - unreadable: not ours either
        props = {}
    if props.get("producer") != "blockprune":
        raise OutputExistsError(
            f"{path} exists and was not written by blockprune; nothing was changed. Fix: move it away, "
            "or pass --overwrite (overwrite=True) to replace it."
        )


def open_runtime(
    name: str,
    model_dir: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    threads: int | None = None,
) -> Runtime:
    """Runtime ``name`` for the model in ``model_dir`` (torch runtimes may take ``model`` instead)."""
    check_runtimes([name])
    if name in FILES:
        if model_dir is None:
            raise BlockpruneError(f"runtime '{name}' reads {FILES[name]} from a model folder; none was given.")
        if name.startswith("openvino"):
            from blockprune.deploy.openvino_runtime import OpenVinoRuntime

            return OpenVinoRuntime(Path(model_dir) / FILES[name], threads, name)
        return OnnxRuntime(Path(model_dir) / FILES[name], name, threads)
    if model is None:
        if model_dir is None:
            raise BlockpruneError(f"runtime '{name}' needs a model or a model folder.")
        from blockprune.models import load_model

        model = load_model(model_dir)
    if threads:
        torch.set_num_threads(int(threads))
    return TorchRuntime(model, name)


def check_deploy_config(deploy: Mapping[str, Any] | None) -> None:
    """The ``deploy`` config group's values, checked before training (a typo must not wait for the end of a job)."""
    if not deploy or not deploy.get("runtimes"):
        return
    check_runtimes(list(deploy["runtimes"]))
    for key in ("batch_sizes",):
        if any(int(b) < 1 for b in deploy.get(key) or [1]):
            raise ConfigError(f"deploy.{key}={list(deploy.get(key))}: every batch size must be >= 1.")
    for key in ("warmup", "repeats"):
        if int(deploy.get(key, 1)) < 1:
            raise ConfigError(f"deploy.{key}={deploy.get(key)} must be >= 1.")
    if int(deploy.get("calibration_texts", 0)) < 0:
        raise ConfigError(f"deploy.calibration_texts={deploy.get('calibration_texts')} must be >= 0.")
    if float(deploy.get("max_accuracy_drop", 0.0)) < 0:
        raise ConfigError(f"deploy.max_accuracy_drop={deploy.get('max_accuracy_drop')} must be >= 0 (points).")
    unknown = set(deploy.get("int8") or {}) - {"per_channel", "keep_fp32", "quantize_embeddings", "reduce_range"}
    if unknown:
        raise ConfigError(
            f"deploy.int8 has unknown keys {sorted(unknown)}; known: per_channel, keep_fp32, "
            "quantize_embeddings, reduce_range."
        )
