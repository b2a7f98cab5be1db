"""Dynamic int8 quantisation of an exported ONNX classifier (onnxruntime.quantization).

Dynamic quantisation needs no calibration data: weights are stored as int8, activations are
quantised per batch at run time, and on CPUs with VNNI / AMX the integer matrix products are
what makes it fast. Layers whose error reaches the logits directly can be left in float32:
``keep_fp32`` names ONNX node-name fragments (``"classifier"`` by default: one small
matrix, no speed to gain, and its rounding error would land on the logits unaveraged).
The word embeddings (a ``Gather``) stay float32 unless ``quantize_embeddings``: quantising
them shrinks the file but saves no time.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from blockprune.atomic import atomic_path
from blockprune.errors import BlockpruneError

#: Node-name fragments left in float32 by default.
DEFAULT_KEEP_FP32 = ("classifier",)


def kept_fp32_nodes(path: Path, fragments: Sequence[str]) -> list[str]:
    """Names of the MatMul / Gemm nodes of ``path`` whose names contain a fragment (left in float32)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and any(f in n.name for f in fragments)]
    # the quantiser first splits a Gemm into <name>_MatMul + <name>_Add, and matches exclusions after that
    return names + [f"{n}_MatMul" for n in names]


def quantize_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    per_channel: bool = True,
    keep_fp32: Sequence[str] = DEFAULT_KEEP_FP32,
    quantize_embeddings: bool = False,
    reduce_range: bool = False,
) -> Path:
    """Write a dynamically int8-quantised copy of the ONNX model ``src`` to ``dst`` (atomically).

    ``per_channel`` (default) gives each output row its own scale: on e5-small-mr it halved the
    largest logit error of per-tensor scales at the same speed (docs/serving.md).
    ``reduce_range`` uses 7-bit weights, which avoids saturation on CPUs without VNNI (AVX2
    only) at some cost in accuracy.
    """
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise BlockpruneError("onnxruntime is not installed; install blockprune[onnx].") from err
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise BlockpruneError(
            f"{src} does not exist; export the float32 model first (blockprune export MODEL --runtime onnx)."
        )
    ops = ["MatMul", "Gemm", "Attention"] + (["Gather"] if quantize_embeddings else [])
    excluded = kept_fp32_nodes(src, keep_fp32) if keep_fp32 else []
    root = logging.getLogger()
    level = root.level
    with atomic_path(dst) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing hint to the root logger
        try:
            quantize_dynamic(
                str(src),
                str(tmp),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=ops,
                nodes_to_exclude=excluded,
                # a type shape inference cannot name (outputs of fused contrib ops) is float32
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.setLevel(level)
    return dst
