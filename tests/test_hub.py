"""Model cards carry a job's numbers and parse with huggingface_hub; pushing offline fails fast with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from blockprune import hub
from blockprune.config import entry_script
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.evaluation import record_interval
from helpers.jobs import TINY_CLI, make_cfg

SECRET = "hf_thisIsNotARealTokenButMustNeverBeLogged"


@pytest.fixture(scope="module")
def pruned_job(tmp_path_factory):
    """A real tiny job: pruned, distilled from a teacher, vocabulary-trimmed, with CodeCarbon on."""
    from blockprune.main import train

    tmp = tmp_path_factory.mktemp("job")
    cfg = make_cfg(
        tmp,
        [
            "prune=block",
            "prune.sparsity=0.5",
            "prune.attention_block=head",
            "vocab.trim=true",
            "trainer.max_epochs=1",
            "bench.repeats=2",
            "bench.warmup=1",
            "callbacks.carbon.measure_power_secs=1",
        ],
    )
    train(cfg)
    return tmp


def test_every_saved_model_gets_a_card_with_the_numbers_of_its_results(pruned_job):
    results = json.loads((pruned_job / "results.json").read_text())
    card = ModelCard.load(pruned_job / "model" / "README.md")
    assert results["hub"]["card"] == str(pruned_job / "model" / "README.md")
    data = card.data
    assert data.language == "mr" and data.pipeline_tag == "text-classification" and data.library_name == "transformers"
    final = results.get("metrics_final") or results["metrics_compacted"]
    values = {e.metric_type: e.metric_value for e in data.eval_results}
    assert values == {"accuracy": round(final["test/acc"], 4), "f1": round(final["test/f1_macro"], 4)}
    assert all(e.dataset_split == "test" and e.task_type == "text-classification" for e in data.eval_results)
    assert data.co2_eq_emissions["emissions"] == round(1000 * results["carbon"]["training"]["emissions_kg"], 4)
    assert data.co2_eq_emissions["source"] == "CodeCarbon"
    assert {"pruned", "vocabulary-trimmed"} <= set(data.tags)
    text = card.text
    compaction, pruning = results["compaction"], results["pruning"]
    assert f"Attention heads left: {compaction['heads_left']} of {compaction['heads_total']}" in text
    assert f"FFN neurons left: {compaction['ffn_neurons_left']} of {compaction['ffn_total']}" in text
    assert f"{100 * pruning['sparsity_encoder_linear']:.1f} % of the encoder's linear weights removed" in text
    assert f"Parameters: {results['params']['total'] / 1e6:.2f}M" in text
    assert f"speed-up over the dense model: {results['speed']['speedup']:.2f}x" in text
    assert f"{results['vocab']['vocab_size_after']} of {results['vocab']['vocab_size_before']} pieces" in text
    assert "load_model(" in text  # a compacted model loads with blockprune, and the card says how
    assert str(pruned_job) not in card.content  # no local paths of this machine in a card meant for the Hub


def test_the_card_quotes_the_intervals_of_the_stored_predictions(pruned_job):
    results = json.loads((pruned_job / "results.json").read_text())
    record = {
        "id": [str(i) for i in range(40)],
        "target": [i % 3 for i in range(40)],
        "pred": [i % 3 if i % 5 else (i + 1) % 3 for i in range(40)],
    }
    results["predictions"] = record
    iv = record_interval([record])
    text = ModelCard(hub.card_text(results, {"language": "mr"})).text
    assert f"{iv['acc_low']:.2f} - {iv['acc_high']:.2f}" in text and f"{iv['f1_low']:.2f} - {iv['f1_high']:.2f}" in text


def test_push_without_a_repo_id_or_token_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    with pytest.raises(ConfigError, match="hub.repo_id"):
        hub.check_push(make_cfg(tmp_path, ["hub.push=true"]))
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        hub.check_push(make_cfg(tmp_path, ["hub.push=true", "hub.repo_id=me/tiny"]))


def test_push_to_an_unreachable_hub_is_refused_before_training_with_the_upload_command(tmp_path, monkeypatch):
    from blockprune import models

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    models._hub_unreachable.cache_clear()
    try:
        with pytest.raises(BlockpruneError) as err:
            hub.check_push(make_cfg(tmp_path, ["hub.push=true", "hub.repo_id=me/tiny-mr"]))
    finally:
        models._hub_unreachable.cache_clear()
    assert "cannot be reached" in str(err.value) and "hf upload me/tiny-mr" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.slow
def test_push_offline_fails_fast_with_the_fix_and_never_shows_the_token(tmp_path):
    """A real job with hub.push=true and an unreachable hub: exit 1 before training, the upload command to run later."""
    env = {**os.environ, "HF_TOKEN": SECRET, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            *TINY_CLI,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={out}",
            "hub.push=true",
            "hub.repo_id=me/tiny-mr",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    assert "cannot be reached" in log and "hf upload me/tiny-mr" in log and "Traceback" not in log
    assert SECRET not in log and not any(SECRET in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    assert not (out / "checkpoints").exists() and not (out / "model").exists()  # failed before training


def test_an_upload_that_fails_late_keeps_the_results_and_says_how_to_upload(pruned_job, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    results = json.loads((pruned_job / "results.json").read_text())
    got = hub.publish(results, {"hub": {"push": True, "repo_id": "me/tiny-mr", "language": "mr"}})
    assert got["repo_id"] == "me/tiny-mr" and "error" in got and SECRET not in got["error"]
    assert ModelCard.load(pruned_job / "model" / "README.md").data.model_name == "tiny-mr"
