"""Does Optimum load a folder blockprune exported, and give the plain runtime's logits?

Optimum (optimum-onnx 0.1.0, optimum-intel 1.27) needs transformers < 4.58, blockprune transformers 5,
so this runs in a separate environment and imports nothing from blockprune:

    python3.11 -m venv /tmp/optvenv
    /tmp/optvenv/bin/pip install torch==2.13.0 'transformers<4.58' 'optimum-onnx[onnxruntime]==0.1.0' \
        onnxruntime==1.32.0 optimum-intel==1.27.0 openvino==2026.4.1
    /tmp/optvenv/bin/python scripts/optimum_check.py outputs/.../model [--out optimum.json]

Each exported file present (``model.onnx``, ``model_quantized.onnx``: ``ORTModelForSequenceClassification``;
``openvino_model.xml``, ``openvino_model_int8.xml``: Optimum Intel's ``OVModelForSequenceClassification``) is
loaded by Optimum and compared with the same file run by plain onnxruntime / OpenVINO. The tokenizer
loads with ``AutoTokenizer``; folders saved before blockprune named the class transformers 4 knows
(``TokenizersBackend`` in tokenizer_config.json) fall back to ``tokenizer.json``, and say so.
Exit status 1 when a file does not load or its logits differ from the plain runtime's by more than 1e-5.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerFast

TEXTS = ["मुंबईत पावसाचा जोर वाढला", "भारताने सामना जिंकला", "शेअर बाजारात मोठी घसरण"]
FILES = ("model.onnx", "model_quantized.onnx", "openvino_model.xml", "openvino_model_int8.xml")


def load_tokenizer(folder: Path):
    """AutoTokenizer, as a transformers 4 user loads it; ``tokenizer.json`` when that fails."""
    try:
        return AutoTokenizer.from_pretrained(folder), "AutoTokenizer"
    except ValueError as err:
        print(f"AutoTokenizer cannot load {folder}: {err}; reading tokenizer.json instead", file=sys.stderr)
        special = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        file = str(folder / "tokenizer.json")
        return PreTrainedTokenizerFast(tokenizer_file=file, pad_token=special["pad_token"]), "tokenizer.json"


def optimum_logits(folder: Path, name: str, encoded) -> np.ndarray:
    if name.endswith(".onnx"):
        from optimum.onnxruntime import ORTModelForSequenceClassification as cls
    else:
        from optimum.intel import OVModelForSequenceClassification as cls
    model = cls.from_pretrained(folder, file_name=name)
    return np.asarray(model(**encoded).logits.detach().numpy())


def plain_logits(folder: Path, name: str, encoded) -> np.ndarray:
    feeds = {k: v.numpy().astype(np.int64) for k, v in encoded.items()}
    if name.endswith(".onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / name))
        return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(folder / name), "CPU")
    inputs = {i.get_any_name(): feeds[i.get_any_name()] for i in compiled.inputs}
    return np.asarray(compiled(inputs)[compiled.outputs[0]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    tokenizer, tokenizer_source = load_tokenizer(args.folder)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    files, failed = {}, 0
    for name in FILES:
        if not (args.folder / name).is_file():
            print(f"{name}: not exported", file=sys.stderr)
            continue
        diff = float(
            np.abs(optimum_logits(args.folder, name, encoded) - plain_logits(args.folder, name, encoded)).max()
        )
        failed += diff > 1e-5
        files[name] = {"max_abs_diff_vs_plain_runtime": diff}
        print(f"{name}: Optimum loads it; max |logit difference| vs the plain runtime {diff:.2e}")
    if args.out:
        cpu = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        flags = next((ln.split(":")[1].split() for ln in cpu if ln.startswith("flags")), [])
        record = {
            "date": datetime.date.today().isoformat(),
            "folder": str(args.folder),
            "cpu": next((ln.split(":")[1].strip() for ln in cpu if ln.startswith("model name")), None),
            "flags": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags],
            "versions": {
                p: metadata.version(p) for p in ("transformers", "optimum", "optimum-onnx", "optimum-intel", "openvino")
            },
            "tokenizer": tokenizer_source,
            "files": files,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return int(failed > 0 or not files)


if __name__ == "__main__":
    sys.exit(main())
