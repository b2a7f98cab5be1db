"""Training cost of random vs length-bucketed batches (data.bucket_by_length), side by side.

Times forward + backward + optimiser step of e5-small-mr on the same MahaSent-ST training texts,
batched both ways, the two modes alternated batch by batch in one process. Writes a JSON file.

    python scripts/bucketing_speed.py --texts 1024 --out docs/results/bucketing_cpu/bucketing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from blockprune.bench.environment import environment
from blockprune.data.buckets import LengthBucketBatchSampler

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="docs/results/bucketing_cpu/bucketing.json")
    args = ap.parse_args()
    model_dir = SHARED / "models" / "e5-small-mr"
    frame = pd.read_csv(SHARED / "data" / "mahasent-st" / "MahaSent_ST_Train.csv").sample(args.texts, random_state=0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = [tok(t, truncation=True, max_length=64) for t in frame["marathi_text"]]
    labels = [int(x) + 1 for x in frame["label"]]
    collate = DataCollatorWithPadding(tok, return_tensors="pt")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(enc), generator=gen).tolist()
    plans = {
        "random": [perm[i : i + args.batch_size] for i in range(0, len(perm), args.batch_size)],
        "bucketed": list(LengthBucketBatchSampler([len(e["input_ids"]) for e in enc], args.batch_size, gen)),
    }
    times: dict[str, list[float]] = {k: [] for k in plans}
    tokens = {k: sum(len(b) * max(len(enc[i]["input_ids"]) for i in b) for b in v) for k, v in plans.items()}

    def step(batch_ids: list[int]) -> float:
        batch = collate([{**enc[i], "labels": labels[i]} for i in batch_ids])
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - start

    step(plans["random"][0])  # warm-up
    for a, b in zip(plans["random"], plans["bucketed"]):  # alternated: both modes see the same machine load
        times["random"].append(step(a))
        times["bucketed"].append(step(b))
    result = {
        "texts": args.texts,
        "batch_size": args.batch_size,
        "padded_positions": tokens,
        "epoch_seconds": {k: round(sum(v), 2) for k, v in times.items()},
        "median_step_seconds": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "speedup_epoch": round(sum(times["random"]) / sum(times["bucketed"]), 3),
        "environment": environment("cpu"),
        "command": f"python scripts/bucketing_speed.py --texts {args.texts} --out {args.out}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("padded_positions", "epoch_seconds", "speedup_epoch")}))


if __name__ == "__main__":
    main()
