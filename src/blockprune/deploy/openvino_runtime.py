"""OpenVINO: the exported ONNX graph converted to OpenVINO IR and run by its CPU plugin.

Measured fastest at batch 32 on a CPU with AMX (docs/serving.md), because the plugin runs in
its default inference precision, bfloat16 on CPUs with AMX or AVX512-BF16 and float32
elsewhere; so this runtime is re-tested like the int8 ones, never assumed exact. Files are the
ones Optimum Intel's ``OVModelForSequenceClassification`` loads (``openvino_model.xml`` + ``.bin``).
``openvino-int8`` is the same IR quantised to int8 by NNCF (``openvino_model_int8.xml``, the name to
give Optimum Intel's ``file_name=``). Optional: ``pip install "blockprune[openvino]"`` (openvino, nncf).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blockprune.atomic import OutputExistsError, check_output
from blockprune.deploy.runtimes import Runtime, int64_feeds
from blockprune.errors import BlockpruneError, ConfigError

_PRODUCER = "producer"


def openvino_module():
    """The ``openvino`` package, or an error that says how to install it."""
    try:
        import openvino
    except ImportError as err:
        raise BlockpruneError(
            'runtime "openvino" needs the openvino package. Fix: pip install "blockprune[openvino]".'
        ) from err
    return openvino


def export_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Convert ``onnx_path`` to ``xml_path`` (+ its ``.bin``), weights kept float32; both files
    appear together or not at all. An IR that blockprune did not write is replaced only with ``overwrite``."""
    ov = openvino_module()
    xml = Path(xml_path)
    check_own_openvino(xml, overwrite)
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info("blockprune", _PRODUCER)
    _save_ir(ov, model, xml)
    return xml


def _save_ir(ov: Any, model: Any, xml: Path) -> None:
    """Save ``model`` as ``xml`` + ``.bin`` (weights not compressed): both appear together or not at all."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml.name}.", suffix=".tmp", dir=xml.parent))
    try:
        ov.save_model(model, str(tmp / xml.name), compress_to_fp16=False)
        bin_name = xml.with_suffix(".bin").name
        os.replace(tmp / bin_name, xml.parent / bin_name)  # the weights first: an .xml always has its .bin
        os.replace(tmp / xml.name, xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quantize_openvino(
    onnx_path: str | os.PathLike,
    xml_path: str | os.PathLike,
    tokenizer: Any,
    calibration_texts: Sequence[str],
    max_length: int = 128,
    overwrite: bool = False,
) -> Path:
    """OpenVINO int8 by NNCF post-training quantisation (transformer preset: activations calibrated on
    ``calibration_texts``, never the test texts; softmax and layer norms stay in higher precision).

    Measured on an AVX-512 VNNI CPU: the fastest variant for the 50 % SHC model and fewer changed
    predictions than onnxruntime dynamic int8 (docs/serving.md); re-tested in every job like ``onnx-int8``."""
    ov = openvino_module()
    try:
        import nncf
    except ImportError as err:
        raise BlockpruneError('runtime "openvino-int8" needs nncf. Fix: pip install "blockprune[openvino]".') from err
    texts = [t for t in calibration_texts if t]
    if not texts:
        raise ConfigError(
            'runtime "openvino-int8" needs calibration texts (a job takes them from its training split). '
            "Fix: blockprune export MODEL --runtime openvino-int8 --calibration FILE"
        )
    xml = Path(xml_path)
    check_own_openvino(xml, overwrite)
    model = ov.Core().read_model(str(onnx_path))
    names = [i.get_any_name() for i in model.inputs]
    batches = []
    for start in range(0, len(texts), 16):
        enc = tokenizer(texts[start : start + 16], padding=True, truncation=True, max_length=max_length)
        batches.append(int64_feeds({k: np.asarray(v) for k, v in enc.items()}, names))
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars; stdout is the export's JSON summary
        quantized = nncf.quantize(
            model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
        )
    quantized.set_rt_info("blockprune", _PRODUCER)
    quantized.set_rt_info(len(texts), "blockprune_calibration_texts")
    _save_ir(ov, quantized, xml)
    return xml


def check_own_openvino(xml: Path, overwrite: bool = False) -> None:
    """Refuse to replace an OpenVINO IR without blockprune's producer tag (a user's own export)."""
    check_output(xml, None, overwrite)
    if overwrite or not xml.is_file():
        return
    try:
        model = openvino_module().Core().read_model(str(xml))
        ours = model.has_rt_info(_PRODUCER) and model.get_rt_info(_PRODUCER).astype(str) == "blockprune"
    except Exception:  # noqa: BLE001 - unreadable: not ours either
        ours = False
    if not ours:
        raise OutputExistsError(
            f"{xml} exists and was not written by blockprune; nothing was changed. Fix: move it away, "
            "or pass --overwrite (overwrite=True) to replace it."
        )


class OpenVinoRuntime(Runtime):
    """The IR compiled for the CPU plugin (latency hint); ``precision`` is what the plugin runs in
    (for ``openvino-int8``: the precision of the layers NNCF left unquantised)."""

    def __init__(self, xml: str | os.PathLike, threads: int | None = None, name: str = "openvino"):
        ov = openvino_module()
        self.path, self.name = Path(xml), name
        if not self.path.is_file():
            raise BlockpruneError(
                f"{self.path} does not exist: runtime '{name}' needs it. "
                f"Fix: blockprune export {self.path.parent} --runtime {name}"
            )
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]

    def logits(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.compiled(int64_feeds(batch, self.input_names))[0], dtype=np.float32)
