"""One redaction path: key names, value shapes, URLs, Hydra overrides, log records."""

from __future__ import annotations

import logging
import os

import pytest

from blockprune.redact import (
    MASK,
    RedactingFilter,
    env_indirect_override,
    is_secret_key,
    redact,
    redact_text,
)

SECRET = "s3cr3tValue"


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "hf_token",
        "hfToken",
        "wandbApiKey",
        "WANDB_API_KEY",
        "Authorization",
        "auth",
        "bearer",
        "pwd",
        "pass",
        "creds",
        "private_key",
        "passphrase",
        "cookie",
        "model.creds",
        "x-api-key",
        "password",
        "secret",
    ],
)
def test_secret_key_names_are_masked(key):
    assert is_secret_key(key)
    assert redact({key: SECRET}) == {key: MASK}
    assert SECRET not in redact(f"{key}={SECRET}") and SECRET not in redact_text(f"'{key}': '{SECRET}'")


@pytest.mark.parametrize(
    "key", ["tokenizer", "unk_token", "pad_token", "author", "num_tokens", "passes", "task_name", "flops_per_token"]
)
def test_ordinary_key_names_are_kept(key):
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


@pytest.mark.parametrize(
    "value", ["hf_" + "a1B2" * 6, "ghp_" + "Z9" * 12, "sk-" + "proj_" * 5, "0123456789abcdef" * 2 + "01234567"]
)
def test_secret_value_shapes_are_masked_under_any_key(value):
    assert redact({"note": f"run with {value} please"}) == {"note": f"run with {MASK} please"}


def test_commit_ids_and_sha256_digests_are_kept():
    commit, digest = "0123456789abcdef" * 2 + "01234567", "ab" * 32
    assert redact({"git_commit": commit, "sha256": digest}) == {"git_commit": commit, "sha256": digest}


def test_url_user_info_and_query_are_masked():
    assert (
        redact_text("get https://me:pw@host.org/a/x.csv?token=abc&b=1 now")
        == "get https://***@host.org/a/x.csv?*** now"
    )
    assert redact({"url": "https://host.org/x.csv"}) == {"url": "https://host.org/x.csv"}


@pytest.mark.parametrize(
    "override, kept",
    [
        ("model.token='abc def'", "model.token="),
        ("model.creds={token: abc, user: me}", "model.creds="),
        ("+model.hub_token=" + "hf_" + "x" * 30, "+model.hub_token="),
        ("data.file={url: 'https://h.org/x.csv?token=abc', sha256: null}", "data.file={url: 'https://h.org/x.csv?***'"),
        ("model.token=a,b", "model.token="),
    ],
)
def test_overrides_are_parsed_with_hydras_parser(override, kept):
    clean = redact(override)
    assert clean.startswith(kept) and "abc" not in clean and " def" not in clean and "x" * 30 not in clean
    assert redact("prune.sparsity=0.1,0.5") == "prune.sparsity=0.1,0.5"
    assert redact("model.token=${oc.env:HF_TOKEN}") == "model.token=${oc.env:HF_TOKEN}"


def test_env_indirection_keeps_the_value_for_the_job_but_not_in_the_override(monkeypatch):
    from omegaconf import OmegaConf

    moved = env_indirect_override("data.file={url: 'https://h.org/x.csv?token=abc'}")
    assert "abc" not in moved and "${oc.env:BLOCKPRUNE_SECRET_" in moved
    name = moved.split("${oc.env:")[1].split("}")[0]
    assert os.environ.pop(name) == "https://h.org/x.csv?token=abc"
    assert env_indirect_override("trainer.max_epochs=2") == "trainer.max_epochs=2"
    monkeypatch.setenv(name, "https://h.org/x.csv?token=abc")
    cfg = OmegaConf.create({"url": "${oc.env:" + name + "}"})
    assert cfg.url == "https://h.org/x.csv?token=abc"


def test_log_records_are_masked():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "downloading %s", ("https://h.org/x.csv?token=abc",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "downloading https://h.org/x.csv?***"


def test_counts_in_results_are_kept():
    results = {
        "flops_per_token": 43190000,
        "dense": {"flops_per_token": 1.5e7},
        "tokens": {"train": {"max": 64}},
        "hub_token": 1234,
    }
    assert redact(results) == {**results, "hub_token": 1234}  # a number under *token is a count
    assert redact({"password": 1234}) == {"password": MASK}
