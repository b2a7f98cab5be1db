"""Does Optimum load a folder blockprune exported, and give plain onnxruntime's logits?

Optimum (optimum-onnx 0.1.0) needs transformers < 4.58, blockprune transformers 5, so this runs in
a separate environment and imports nothing from blockprune:

    python3.11 -m venv /tmp/optvenv
    /tmp/optvenv/bin/pip install torch==2.13.0 'transformers<4.58' 'optimum-onnx[onnxruntime]==0.1.0' \
        onnxruntime==1.32.0
    /tmp/optvenv/bin/python scripts/optimum_check.py outputs/.../model

The tokenizer comes from ``tokenizer.json``: the ``tokenizer_config.json`` transformers 5 writes names
the class ``TokenizersBackend``, which transformers 4 does not know. Exit status 1 when a file does
not load or its logits differ from plain onnxruntime's by more than 1e-5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import PreTrainedTokenizerFast

TEXTS = ["मुंबईत पावसाचा जोर वाढला", "भारताने सामना जिंकला", "शेअर बाजारात मोठी घसरण"]


def main() -> int:
    folder = Path(sys.argv[1])
    special = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token=special["pad_token"])
    failed = 0
    for name in ("model.onnx", "model_quantized.onnx"):
        if not (folder / name).is_file():
            print(f"{name}: not exported", file=sys.stderr)
            continue
        model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=name)
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.detach().numpy()
        session = ort.InferenceSession(str(folder / name))
        inputs = {i.name for i in session.get_inputs()}
        encoded = tokenizer(TEXTS, padding=True, return_tensors="np")
        reference = session.run(None, {k: v for k, v in encoded.items() if k in inputs})[0]
        diff = float(np.abs(logits - reference).max())
        failed += diff > 1e-5
        print(f"{name}: {type(model).__name__} loads it; max |logit difference| vs plain onnxruntime {diff:.2e}")
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())
