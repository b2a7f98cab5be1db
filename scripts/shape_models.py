"""Random-weight models with a study's shapes, for speed-only benchmarks where the trained ones are not at hand.

    python scripts/shape_models.py ../shared/models/e5-small-mr --out /tmp/shapes --sparsities 0.25 0.5 0.75
    blockprune bench /tmp/shapes/dense /tmp/shapes/p25 /tmp/shapes/p50 /tmp/shapes/p75 --device cuda ...

Latency depends on the layer widths, not on the weights, so a model built from the config alone
(random weights; no 58 MiB weight file to carry to a GPU machine), compacted with the same head /
FFN-neuron pruning as the study's head-mode models (a random ``sparsity`` share of each layer's heads
and neurons removed, so every layer keeps the same width, as the study's models did), times like
the trained one. Accuracy of such a model means nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from blockprune.flops import encoder_layout  # noqa: E402
from helpers.saved_models import compacted  # noqa: E402


def shape_models(config_dir: Path, sparsities: list[float], labels: int = 12, seed: int = 0) -> dict:
    """``dense`` and ``p<percent>`` models (random weights, compacted), by name."""
    config = AutoConfig.from_pretrained(config_dir, num_labels=labels)
    torch.manual_seed(seed)
    dense = AutoModelForSequenceClassification.from_config(config).eval()
    return {"dense": dense} | {f"p{round(s * 100)}": compacted(dense, s, seed) for s in sparsities}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a model folder with config.json (weights are not read)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--labels", type=int, default=12)
    args = parser.parse_args()
    for name, model in shape_models(args.config, args.sparsities, args.labels).items():
        model.save_pretrained(args.out / name)
        layout = sorted({(x["heads"], x["ffn"]) for x in encoder_layout(model)})
        print(f"{args.out / name}: (heads, FFN neurons) per layer {layout}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
