"""Serving speed on this CPU: dense e5-small-mr vs a 50 % head/FFN-compacted copy, in every runtime.

    .venv/bin/python scripts/serving_cpu.py --out docs/results/serving_cpu/serving_cpu.json

The compacted model keeps a random 50 % of each layer's heads and FFN neurons (top-k of random
scores, compacted with blockprune.pruning), and both classifiers have a random 12-label head:
only speed and agreement with PyTorch float32 mean anything here, not accuracy. All variants
are timed in one process, calls alternated round-robin, medians; batch 32 at the 95th
percentile length of the MahaNews SHC headlines and batch 1 at their median length.

Besides the deploy runtimes it times int8 variants that the deploy step does not offer, to show
whether they would pay: onnxruntime static int8 (QDQ, calibrated on 256 headlines outside the
check set), onnxruntime's transformer graph fusion before dynamic int8, and OpenVINO int8 by NNCF
(when ``nncf`` is installed: ``pip install nncf``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from blockprune.atomic import write_json  # noqa: E402
from blockprune.bench.timing import round_robin, timed  # noqa: E402
from blockprune.data.reading import read_records  # noqa: E402
from blockprune.deploy.inference import predict_logits  # noqa: E402
from blockprune.deploy.manifest import cpu_info  # noqa: E402
from blockprune.deploy.onnx_export import export_onnx  # noqa: E402
from blockprune.deploy.openvino_runtime import OpenVinoRuntime, export_openvino, quantize_openvino  # noqa: E402
from blockprune.deploy.quantize import DEFAULT_KEEP_FP32, kept_fp32_nodes, quantize_int8  # noqa: E402
from blockprune.deploy.runtimes import OnnxRuntime, Runtime, TorchRuntime  # noqa: E402
from blockprune.flops import encoder_layout  # noqa: E402
from blockprune.models import load_tokenizer  # noqa: E402
from helpers.paths import E5_DIR, SHC_CSV  # noqa: E402
from helpers.saved_models import compacted  # noqa: E402


class CompiledRuntime(TorchRuntime):
    """torch.compile (inductor) of the float32 model; shapes are static per cell."""

    def __init__(self, model):
        super().__init__(model, "torch-compile")
        self.model = torch.compile(model, dynamic=False)


def make_models(labels: int, sparsity: float, seed: int):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    dense = AutoModelForSequenceClassification.from_pretrained(E5_DIR, num_labels=labels, dtype=torch.float32).eval()
    pruned = compacted(dense, sparsity, seed)
    return dense, pruned, [{k: x[k] for k in ("layer", "heads", "ffn")} for x in encoder_layout(pruned)]


def calibration_batches(tok, texts, batch: int = 16):
    """Tokenised batches for static quantisation (headlines not in the agreement check set)."""
    return [
        dict(tok(texts[i : i + batch], padding=True, truncation=True, return_tensors="np"))
        for i in range(0, len(texts), batch)
    ]


def quantize_static_int8(src: Path, dst: Path, batches) -> Path:
    """onnxruntime static int8 (QDQ, per-channel weights, activation ranges from calibration batches)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            item = next(self.batches, None)
            return None if item is None else {k: item[k] for k in names}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=kept_fp32_nodes(src, DEFAULT_KEEP_FP32),
        extra_options={"MatMulConstBOnly": True},
    )
    return dst


def fused_int8(src: Path, dst: Path) -> Path:
    """onnxruntime's transformer graph optimiser (fused SkipLayerNorm / BiasGelu), then dynamic int8."""
    from onnxruntime.transformers.optimizer import optimize_model

    fused = dst.with_name(dst.stem + "_fp32.onnx")
    optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(str(fused))
    return quantize_int8(fused, dst)


def time_round_robin(runtimes: dict[str, Runtime], feed, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each runtime on ``feed``, calls alternated round-robin (blockprune.bench.timing)."""
    return round_robin(list(runtimes), repeats, lambda name: timed(lambda: runtimes[name].logits(feed), False))


def timing_batch(tok, texts, batch, seq_len):
    enc = tok(
        [texts[i % len(texts)] for i in range(batch)],
        truncation=True,
        max_length=seq_len,
        padding="max_length",
        return_tensors="np",
    )
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--check-texts", type=int, default=500, help="texts for agreement with PyTorch float32")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-openvino", action="store_true", help="skip OpenVINO (timed when it is installed)")
    parser.add_argument(
        "--no-int8-variants",
        action="store_true",
        help="skip static int8, fused int8 and OpenVINO int8 (NNCF, timed when nncf is installed)",
    )
    parser.add_argument("--calibration-texts", type=int, default=256, help="headlines (not checked ones) to calibrate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    load_before = os.getloadavg()

    texts = read_records(SHC_CSV)["text"].tolist()
    tok = load_tokenizer(str(E5_DIR))
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=512)["input_ids"]]
    seq32, seq1 = int(math.ceil(np.percentile(lengths, 95))), int(np.median(lengths))
    dense, pruned, layout = make_models(12, 0.5, 0)
    calibration = calibration_batches(tok, texts[-args.calibration_texts :])
    has_openvino = not args.no_openvino and importlib.util.find_spec("openvino") is not None

    tmp = Path(tempfile.mkdtemp(prefix="serving-cpu-"))
    runtimes: dict[str, dict[str, Runtime]] = {}
    export_s = {}
    for label, model in (("dense", dense), ("50%", pruned)):
        folder = tmp / label.replace("%", "pct")
        t = time.time()
        fp32 = export_onnx(model, tok, folder / "model.onnx")
        export_s[f"{label} onnx"] = time.time() - t
        variants = {  # embeddings stay fp32 in all; the default is per-channel with the classifier fp32
            "onnx-int8 per-tensor": dict(per_channel=False),
            "onnx-int8 per-channel": dict(per_channel=True),
            "onnx-int8 per-tensor, classifier int8": dict(per_channel=False, keep_fp32=()),
        }
        rts: dict[str, Runtime] = {
            "torch": TorchRuntime(model),
            "torch-bf16": TorchRuntime(model, "torch-bf16"),
            "torch-int8": TorchRuntime(model, "torch-int8"),
            "onnx": OnnxRuntime(fp32, "onnx", args.threads),
        }
        for name, opts in variants.items():
            t = time.time()
            q = quantize_int8(fp32, folder / f"{name.replace(' ', '_')}.onnx", **opts)
            export_s[f"{label} {name}"] = time.time() - t
            rts[name] = OnnxRuntime(q, name, args.threads)
        if not args.no_int8_variants:
            t = time.time()
            q = quantize_static_int8(fp32, folder / "static_int8.onnx", calibration)
            export_s[f"{label} onnx-int8 static"] = time.time() - t
            rts["onnx-int8 static"] = OnnxRuntime(q, "onnx-int8 static", args.threads)
            t = time.time()
            q = fused_int8(fp32, folder / "fused_int8.onnx")
            export_s[f"{label} onnx-int8 fused"] = time.time() - t
            rts["onnx-int8 fused"] = OnnxRuntime(q, "onnx-int8 fused", args.threads)
        if not args.no_compile:
            rts["torch-compile"] = CompiledRuntime(model)
        if has_openvino:
            t = time.time()
            xml = export_openvino(fp32, folder / "openvino_model.xml")
            export_s[f"{label} openvino"] = time.time() - t
            rts["openvino"] = OpenVinoRuntime(xml, args.threads)
            if not args.no_int8_variants and importlib.util.find_spec("nncf") is not None:
                t = time.time()
                q = quantize_openvino(fp32, folder / "openvino_int8.xml", tok, texts[-args.calibration_texts :])
                export_s[f"{label} openvino-int8 (NNCF)"] = time.time() - t
                rts["openvino-int8 (NNCF)"] = OpenVinoRuntime(q, args.threads)
        runtimes[label] = rts

    # agreement with PyTorch float32 of the same model, on real headlines
    check = texts[: args.check_texts]
    quality = {}
    for label, rts in runtimes.items():
        ref = predict_logits(rts["torch"], tok, check, max_length=512)
        for name, rt in rts.items():
            if name == "torch-compile":
                continue  # static shapes: one compile per batch shape; same kernels' math as torch fp32
            got = predict_logits(rt, tok, check, max_length=512)
            quality[f"{label} | {name}"] = {
                "agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
                "max_abs_logit_diff": float(np.abs(got - ref).max()),
                "n_texts": len(check),
            }
            print(label, name, quality[f"{label} | {name}"], file=sys.stderr)

    cells = {}
    for batch, seq in ((32, seq32), (1, seq1)):
        feed = timing_batch(tok, texts, batch, seq)
        flat = {f"{label} | {name}": rt for label, rts in runtimes.items() for name, rt in rts.items()}
        compile_s = {}
        for key, rt in flat.items():
            t = time.time()
            for _ in range(args.warmup):
                rt.logits(feed)
            if "compile" in key:
                compile_s[key] = time.time() - t
        times = time_round_robin(flat, feed, args.repeats)
        med = {k: float(np.median(v) * 1e3) for k, v in times.items()}
        base = med["dense | torch"]
        cells[f"batch {batch} x {seq}"] = {
            k: {
                "median_ms": med[k],
                "p10_ms": float(np.percentile(times[k], 10) * 1e3),
                "p90_ms": float(np.percentile(times[k], 90) * 1e3),
                "speedup_vs_dense_torch": base / med[k],
                "speedup_vs_dense_same_runtime": med[f"dense | {k.split(' | ')[1]}"] / med[k],
                "texts_per_s": batch * 1e3 / med[k],
            }
            for k in flat
        }
        cells[f"batch {batch} x {seq}"]["_warmup_incl_compile_s"] = compile_s
        print(
            json.dumps(
                {
                    k: round(v["speedup_vs_dense_torch"], 2)
                    for k, v in cells[f"batch {batch} x {seq}"].items()
                    if not k.startswith("_")
                }
            ),
            file=sys.stderr,
        )

    result = {
        "schema": "blockprune.serving_cpu/1",
        "command": "python " + " ".join(sys.argv),
        "note": "random 12-label heads; 50 % = random top-k of heads and FFN neurons per layer, compacted. "
        "Speed and agreement only; no accuracy.",
        "environment": {
            **cpu_info(),
            "threads": args.threads,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "seq_len": {"batch_32": seq32, "batch_1": seq1, "source": f"{SHC_CSV.name}: p95 / median tokens"},
        "layout_50pct": layout,
        "repeats": args.repeats,
        "export_s": export_s,
        "agreement_with_torch_fp32": quality,
        "cells": cells,
        "wall_s": time.time() - start,
    }
    write_json(args.out, result)  # atomic, like every JSON artefact of the project
    print(f"wrote {args.out} in {result['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
