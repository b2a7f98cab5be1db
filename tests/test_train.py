"""Real training runs of the tiny model through train(cfg), as a user's job would run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from blockprune import load_model
from blockprune.evaluation import predict_texts, record_metrics
from blockprune.main import train
from helpers.jobs import make_cfg


def _texts(cfg, n: int = 8) -> list[str]:
    import pandas as pd

    return pd.read_csv(cfg.data.file)["Text"].head(40).tolist()[20 : 20 + n]


def _saved_model_predictions(cfg, model_dir: str) -> list[int]:
    """The saved model's own predictions on the job's test split, through its saved tokenizer."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    return predict_texts(
        load_model(model_dir), AutoTokenizer.from_pretrained(model_dir), datamodule.texts("test"), cfg.data.max_length
    )


def _assert_reproduced(cfg, results, metrics_key: str) -> None:
    """The job's reported test accuracy is the accuracy of its recorded predictions, and the saved
    model, reloaded, makes exactly those predictions."""
    record = results["predictions"]
    assert results[metrics_key]["test/acc"] == pytest.approx(record_metrics(record)["test/acc"], abs=1e-6)
    assert _saved_model_predictions(cfg, results["model_dir"]) == record["pred"]


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    cfg = make_cfg(out, [])
    return cfg, train(cfg)


def test_dense_run_writes_a_complete_results_json(dense_run):
    cfg, results = dense_run
    on_disk = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert on_disk["status"] == "completed"
    assert set(on_disk["metrics"]) >= {"val/acc", "val/f1_macro", "test/acc", "test/f1_macro"}
    _assert_reproduced(cfg, on_disk, "metrics")
    assert on_disk["params"]["total"] == sum(p.numel() for p in load_model(on_disk["model_dir"]).parameters())
    assert on_disk["params"]["encoder"] > 0 and on_disk["wall_time_s"] > 0
    assert on_disk["data"]["split_sizes"] == {"train": 96, "val": 48, "test": 48}
    assert on_disk["config"]["model"]["net"]["_target_"] == "blockprune.models.build_tiny_classifier"
    assert (Path(cfg.paths.output_dir) / "data_report.json").is_file()


def test_saved_model_loads_with_plain_transformers_and_gives_the_same_logits(dense_run):
    cfg, results = dense_run
    model_dir = results["model_dir"]
    plain = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tokenizer_config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4.x (Optimum) too
    assert plain.config.id2label[0] == sorted(plain.config.label2id)[0]
    batch = tok(_texts(cfg), padding=True, return_tensors="pt")
    ours = load_model(model_dir)
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, ours(**batch).logits)


def test_pruned_run_compacts_and_reloads_with_the_same_logits(tmp_path):
    cfg = make_cfg(tmp_path, ["prune=block", "prune.sparsity=0.5", "prune.attention_block=head", "vocab.trim=true"])
    results = train(cfg)
    assert results["compaction"]["heads_left"] == 4  # half of 2 layers x 4 heads
    assert results["compaction"]["max_abs_logit_diff"] <= 1e-4
    assert results["pruning"]["sparsity_encoder_linear"] == pytest.approx(0.5)
    assert results["params"]["encoder"] < results["dense"]["params"]["encoder"]
    assert results["flops_per_token"] < results["dense"]["flops_per_token"]
    assert results["metrics_compacted"]["test/acc"] == pytest.approx(results["metrics"]["test/acc"])
    vocab = results["vocab"]
    assert vocab["vocab_size_after"] < vocab["vocab_size_before"] == 23021
    assert results["params"]["word_embeddings"] == vocab["vocab_size_after"] * 128
    assert 0.0 <= vocab["heldout_unk_rate"] <= 0.05  # script characters are kept: few unknown pieces
    _assert_reproduced(cfg, results, "metrics_final")  # the trimmed, saved model gives the reported accuracy
    model = load_model(results["model_dir"])
    tok = AutoTokenizer.from_pretrained(results["model_dir"])
    assert len(tok) == model.config.vocab_size == vocab["vocab_size_after"]
    assert model.config.blockprune_layout["num_heads"] == [2, 2]


def test_filled_stage_fine_tunes_the_compacted_model(tmp_path):
    cfg = make_cfg(tmp_path, ["prune=block", "prune.sparsity=0.5", "prune.fill_epochs=1", "trainer.max_epochs=1"])
    results = train(cfg)
    assert results["pruning"]["fill_epochs"] == 1
    assert results["compaction"]["max_abs_logit_diff"] <= 1e-4  # checked on an unfilled copy
    assert results["params"]["encoder"] < results["dense"]["params"]["encoder"]
    model = load_model(results["model_dir"])
    assert model.config.blockprune_layout["intermediate_sizes"] == [128, 128]
    _assert_reproduced(cfg, results, "metrics_compacted")


def test_a_job_refuses_a_starting_model_that_trained_on_its_test_examples(dense_run, tmp_path):
    """Another data.seed deals other test examples, most of which the seed-42 model trained on: refused
    before training, naming the split to use; the same split trains."""
    from blockprune.errors import ConfigError

    _, results = dense_run
    start = [f"init_from={results['model_dir']}", "prune=block", "prune.sparsity=0.5", "trainer.max_epochs=1"]
    with pytest.raises(ConfigError, match=r"init_from=\S+ was trained on \d+ of this job's 48 test .*data\.seed=42"):
        train(make_cfg(tmp_path / "seed7", [*start, "seed=7"]))
    assert not (tmp_path / "seed7" / "results.json").exists()
    pruned = train(make_cfg(tmp_path / "seed7_same_split", [*start, "seed=7", "data.seed=42"]))
    assert sorted(pruned["predictions"]["id"]) == sorted(results["predictions"]["id"])
