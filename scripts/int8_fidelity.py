"""int8 variants of one trained classifier against its own PyTorch float32: flipped predictions and speed.

    .venv/bin/python scripts/int8_fidelity.py outputs/.../model --out docs/results/serving_cpu/int8_fidelity.json

Random-headed models (scripts/serving_cpu.py) have near-zero logits, so their agreement says little;
a trained model's does. For each variant (dynamic int8 per-channel = the deploy default, per-tensor,
7-bit weights, the FFN output projections left in float32, static QDQ, graph fusion + dynamic; and,
when ``openvino`` is installed, OpenVINO in its plugin's default precision and, with ``nncf``, OpenVINO
int8 by NNCF post-training quantisation, calibrated on the same 256 headlines as static QDQ) it
counts the texts whose predicted label differs from PyTorch float32 on all MahaNews SHC headlines
(a label-free fidelity check, so training texts count too) and times every variant and the float32
model round-robin in one process (medians) at batch 32 and batch 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from serving_cpu import (  # noqa: E402
    calibration_batches,
    fused_int8,
    quantize_static_int8,
    time_round_robin,
    timing_batch,
)

from blockprune.atomic import write_json  # noqa: E402
from blockprune.data.reading import read_records  # noqa: E402
from blockprune.deploy.inference import predict_logits  # noqa: E402
from blockprune.deploy.manifest import cpu_info  # noqa: E402
from blockprune.deploy.onnx_export import export_onnx  # noqa: E402
from blockprune.deploy.quantize import DEFAULT_KEEP_FP32, kept_fp32_nodes, quantize_int8  # noqa: E402
from blockprune.deploy.runtimes import OnnxRuntime, Runtime, TorchRuntime  # noqa: E402
from blockprune.encoder import find_encoder_layers  # noqa: E402
from blockprune.models import load_model, load_tokenizer  # noqa: E402
from helpers.paths import SHC_CSV  # noqa: E402


def openvino_variants(fp32: Path, tok, calibration_texts, threads: int) -> dict[str, Runtime]:
    """OpenVINO in the CPU plugin's default precision (bf16 where the CPU has it) and, when ``nncf`` is
    installed, OpenVINO int8 by NNCF; none when ``openvino`` is not installed."""
    if importlib.util.find_spec("openvino") is None:
        return {}
    from blockprune.deploy.openvino_runtime import OpenVinoRuntime, export_openvino, quantize_openvino

    out = {
        "openvino, plugin default precision": OpenVinoRuntime(export_openvino(fp32, fp32.with_suffix(".xml")), threads)
    }
    if importlib.util.find_spec("nncf") is not None:
        xml = quantize_openvino(fp32, fp32.with_name("openvino_int8.xml"), tok, calibration_texts)
        out["openvino int8 (NNCF, 256 calibration headlines)"] = OpenVinoRuntime(xml, threads)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a saved model folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    model, tok = load_model(args.model).eval(), load_tokenizer(str(args.model))
    texts = read_records(SHC_CSV)["text"].tolist()
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=512)["input_ids"]]
    seq32, seq1 = int(math.ceil(np.percentile(lengths, 95))), int(np.median(lengths))
    tmp = Path(tempfile.mkdtemp(prefix="int8-fidelity-"))
    fp32 = export_onnx(model, tok, tmp / "model.onnx")
    ffn_out = tuple(f"layer.{i}/output/dense" for i in range(len(find_encoder_layers(model))))
    if len(kept_fp32_nodes(fp32, ffn_out)) < 2 * len(ffn_out):  # each name and its "_MatMul" form
        raise SystemExit(f"{fp32}: no node named like {ffn_out[0]!r} in every layer (a BERT-like export is expected)")
    calibration = calibration_batches(tok, texts[-256:])
    variants = {
        "dynamic per-channel (deploy default)": lambda d: quantize_int8(fp32, d),
        "dynamic per-tensor": lambda d: quantize_int8(fp32, d, per_channel=False),
        "dynamic per-channel, 7-bit weights (reduce_range)": lambda d: quantize_int8(fp32, d, reduce_range=True),
        "dynamic per-channel, FFN output projections fp32": lambda d: quantize_int8(
            fp32, d, keep_fp32=(*DEFAULT_KEEP_FP32, *ffn_out)
        ),
        "static QDQ (256 calibration headlines)": lambda d: quantize_static_int8(fp32, d, calibration),
        "graph fusion + dynamic per-channel": lambda d: fused_int8(fp32, d),
    }
    runtimes = {"torch fp32": TorchRuntime(model), "onnx fp32": OnnxRuntime(fp32, "onnx", args.threads)}
    for i, (name, make) in enumerate(variants.items()):
        runtimes[name] = OnnxRuntime(make(tmp / f"variant_{i}.onnx"), name, args.threads)
    runtimes.update(openvino_variants(fp32, tok, texts[-256:], args.threads))

    ref = predict_logits(runtimes["torch fp32"], tok, texts, max_length=128)
    rows = {}
    for name, runtime in runtimes.items():
        got = ref if name == "torch fp32" else predict_logits(runtime, tok, texts, max_length=128)
        flipped = int((got.argmax(-1) != ref.argmax(-1)).sum())
        rows[name] = {
            **({"precision": runtime.precision} if hasattr(runtime, "precision") else {}),
            "flipped": flipped,
            "agreement": 1 - flipped / len(texts),
            "max_abs_logit_diff": float(np.abs(got - ref).max()),
            "mean_abs_logit_diff": float(np.abs(got - ref).mean()),
        }
        print(name, rows[name], file=sys.stderr)

    for batch, seq in ((32, seq32), (1, seq1)):
        feed = timing_batch(tok, texts, batch, seq)
        for runtime in runtimes.values():
            for _ in range(3):
                runtime.logits(feed)
        times = time_round_robin(runtimes, feed, args.repeats)
        base = float(np.median(times["torch fp32"]))
        for name in runtimes:
            rows[name][f"speedup_batch_{batch}"] = base / float(np.median(times[name]))
        rows["torch fp32"][f"median_ms_batch_{batch}"] = base * 1e3
        print({k: round(v[f"speedup_batch_{batch}"], 2) for k, v in rows.items()}, file=sys.stderr)

    result = {
        "schema": "blockprune.int8_fidelity/1",
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": str(args.model),
        "texts": f"{SHC_CSV.name}: {len(texts)} headlines (agreement with own torch fp32; no labels used)",
        "seq_len": {"batch_32": seq32, "batch_1": seq1},
        "environment": {**cpu_info(), "threads": args.threads},
        "repeats": args.repeats,
        "variants": rows,
        "wall_s": time.time() - start,
    }
    write_json(args.out, result)  # atomic, like every JSON artefact of the project
    print(f"wrote {args.out} in {result['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
