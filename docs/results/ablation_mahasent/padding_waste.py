"""How much of a padded training batch is padding, random batches vs length buckets (MahaSent-ST train).

The data module pads each batch to its longest text; attention and the linears still compute on
the padded positions. Sorting texts into buckets of similar length (shuffling the batches, not
the texts) removes most of it. Writes padding_waste.json. Usage: python padding_waste.py <e5 folder> <mahasent folder>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoTokenizer


def padded_tokens(lengths: np.ndarray, batch: int) -> int:
    return int(sum(lengths[i : i + batch].max() * len(lengths[i : i + batch]) for i in range(0, len(lengths), batch)))


def main(model_dir: str, data_dir: str, batch: int = 32, max_length: int = 64) -> None:
    texts = pd.read_csv(Path(data_dir, "MahaSent_ST_Train.csv"))["marathi_text"].astype(str).tolist()
    tok = AutoTokenizer.from_pretrained(model_dir)
    lengths = np.array([min(len(ids), max_length) for ids in tok(texts)["input_ids"]])
    rng = np.random.default_rng(0)
    real = int(lengths.sum())
    shuffled = np.mean([padded_tokens(lengths[rng.permutation(len(lengths))], batch) for _ in range(5)])
    # buckets: sort within chunks of 100 batches (keeps some randomness), then batch
    chunk = 100 * batch
    order = rng.permutation(len(lengths))
    bucketed = np.concatenate([np.sort(lengths[order[i : i + chunk]]) for i in range(0, len(order), chunk)])
    out = {"texts": len(texts), "batch_size": batch, "real_tokens": real,
           "padded_tokens_random_batches": float(shuffled), "padded_tokens_bucketed": padded_tokens(bucketed, batch),
           "mean_length": float(lengths.mean()), "p95_length": float(np.percentile(lengths, 95))}
    out["padding_share_random"] = 1 - real / out["padded_tokens_random_batches"]
    out["padding_share_bucketed"] = 1 - real / out["padded_tokens_bucketed"]
    out["token_reduction_bucketed"] = 1 - out["padded_tokens_bucketed"] / out["padded_tokens_random_batches"]
    print(out)
    Path(__file__).with_name("padding_waste.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
