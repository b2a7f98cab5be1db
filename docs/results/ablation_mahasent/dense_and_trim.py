"""Test predictions of the dense model, untrimmed and with its vocabulary trimmed to its training texts.

The dense job of this ablation ran before jobs recorded per-example test predictions, so they are
recomputed here from its saved model (the accuracy is checked against the job's own test). The
trimmed row is what ``vocab.trim=true`` would save: the tokenizer and embeddings cut to the pieces
of the 1,500 training texts (plus single characters of the scripts seen), scored on the same test
sentences. Writes dense/predictions.json and dense_trimmed/results.json beside this file.
Usage: python dense_and_trim.py <dense job folder>
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf
from transformers import AutoTokenizer

from blockprune.evaluation import predict_texts, prediction_record, record_metrics
from blockprune.models import load_model
from blockprune.vocab import changed_tokenization_rate, trim_vocabulary

HERE = Path(__file__).parent


def main(job: Path) -> None:
    results = json.loads((job / "results.json").read_text())
    data_cfg = OmegaConf.create(results["config"]["data"])
    from hydra.utils import instantiate

    dm = instantiate(data_cfg)
    dm.prepare_data()
    dm.setup("fit")
    texts, labels, ids = dm.texts("test"), dm.labels("test"), dm.example_ids("test")
    model, tok = load_model(job / "model"), AutoTokenizer.from_pretrained(job / "model")
    dense = prediction_record(ids, labels, predict_texts(model, tok, texts, dm.max_length))
    acc = record_metrics(dense)["test/acc"]
    assert abs(acc - results["metrics"]["test/acc"]) < 2e-3, (acc, results["metrics"]["test/acc"])
    (HERE / "dense").mkdir(exist_ok=True)
    (HERE / "dense" / "predictions.json").write_text(json.dumps(dense) + "\n")

    trimmed_model, trimmed_tok, stats = trim_vocabulary(copy.deepcopy(model), tok, dm.texts("train"),
                                                        keep_script_chars=True, verify_samples=0)
    trimmed = prediction_record(ids, labels, predict_texts(trimmed_model, trimmed_tok, texts, dm.max_length))
    out = {"status": "completed", "task_name": "dense_trimmed", "metrics": record_metrics(trimmed),
           "vocab": stats.to_dict(), "resplit_rate_test": changed_tokenization_rate(tok, trimmed_tok, texts),
           "predictions": trimmed, "dense_test_acc_recomputed": acc}
    (HERE / "dense_trimmed").mkdir(exist_ok=True)
    (HERE / "dense_trimmed" / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    print(acc, out["metrics"], out["resplit_rate_test"])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
