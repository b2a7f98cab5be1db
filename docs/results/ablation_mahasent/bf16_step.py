"""fp32 vs bf16 autocast (what trainer.precision=bf16-mixed uses on CPU) for one e5-small-mr training
step, interleaved, best of N (the machine was shared; the minimum is the least disturbed).
Writes bf16_step.json. Usage: python bf16_step.py <e5 folder> <mahasent folder> [repeats]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main(model_dir: str, data_dir: str, repeats: int = 6) -> None:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = pd.read_csv(Path(data_dir, "MahaSent_ST_Train.csv"))["marathi_text"].astype(str).tolist()[:32]
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = torch.zeros(len(texts), dtype=torch.long)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times: dict[str, list[float]] = {"fp32": [], "bf16-mixed": []}
    losses: dict[str, float] = {}
    for _ in range(repeats):
        for name in times:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name != "fp32"):
                logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            opt.zero_grad()  # no step: both precisions time the same weights
            times[name].append(time.perf_counter() - start)
            losses[name] = float(loss)
    out = {"threads": torch.get_num_threads(), "batch": list(batch["input_ids"].shape),
           "best_s": {k: min(v) for k, v in times.items()}, "all_s": times, "loss": losses,
           "amx_bf16": "amx_bf16" in Path("/proc/cpuinfo").read_text()}
    out["speedup_best"] = out["best_s"]["fp32"] / out["best_s"]["bf16-mixed"]
    print(out)
    Path(__file__).with_name("bf16_step.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4]))
