"""Re-split rate of vocabulary trimming on held-out MahaSent-ST text (docs/accuracy.md).

Trims the e5-small-mr tokenizer to the training texts (all 12,000, and the 1,500 the ablation
trains on), as ``vocab.trim=true`` would, and counts how many validation/test sentences the
trimmed tokenizer splits differently from the original (``changed_tokenization_rate``): those
are the sentences whose prediction can change. Writes vocab_resplit.json beside this file.
Usage: python vocab_resplit.py <e5-small-mr folder> <mahasent-st folder>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from blockprune.vocab import changed_tokenization_rate, trim_vocabulary, unk_rate


def main(model_dir: str, data_dir: str) -> None:
    data = {s: pd.read_csv(Path(data_dir, f"MahaSent_ST_{s}.csv"))["marathi_text"].astype(str).tolist()
            for s in ("Train", "Val", "Test")}
    out = {}
    for corpus_name, corpus in (("train_all_12000", data["Train"]), ("train_sample_1500", pd.Series(data["Train"]).sample(1500, random_state=0).tolist())):
        for script_chars in (True, False):
            tok = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
            _, new_tok, stats = trim_vocabulary(model, tok, corpus, keep_script_chars=script_chars, verify_samples=0)
            key = f"{corpus_name}{'' if script_chars else '_no_script_chars'}"
            out[key] = {
                "vocab_before": stats.vocab_size_before, "vocab_after": stats.vocab_size_after,
                "model_params_before": stats.model_params_before, "model_params_after": stats.model_params_after,
                **{f"resplit_rate_{s.lower()}": changed_tokenization_rate(tok, new_tok, data[s]) for s in ("Val", "Test")},
                **{f"unk_rate_{s.lower()}": unk_rate(new_tok, data[s]) for s in ("Val", "Test")},
            }
            print(key, out[key])
    Path(__file__).with_name("vocab_resplit.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
