"""Vocabulary trimming's clear errors, script labels, and the folder-to-folder entry point."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from blockprune.errors import BlockpruneError, ConfigError, DataError
from blockprune.vocab import (
    read_text_column,
    script_key,
    trim_vocabulary,
    trim_vocabulary_folder,
)
from helpers.toy_vocab import (
    CORPUS,
    HELDOUT,
    logits,
    tiny_bert,
    token_strings,
    wordpiece_tokenizer,
)

# --------------------------------------------------------------------------------------- errors


def test_error_empty_corpus():
    tok = wordpiece_tokenizer()
    with pytest.raises(BlockpruneError, match="empty"):
        trim_vocabulary(tiny_bert(tok), tok, ["", "   ", "\n"])


def test_error_corpus_does_not_match_tokenizer():
    tok = wordpiece_tokenizer()
    with pytest.raises(BlockpruneError, match=r"does not match.*\[UNK\].*encoding"):
        trim_vocabulary(tiny_bert(tok), tok, ["आजचा हवामान अंदाज", "नवीन गाडी लाँच"])


def test_error_slow_tokenizer():
    tok = wordpiece_tokenizer()
    with pytest.raises(BlockpruneError, match="fast tokenizer"):
        trim_vocabulary(tiny_bert(tok), SimpleNamespace(is_fast=False), CORPUS)


def test_script_key():
    assert script_key("क") == script_key("ख") == "Devanagari"
    assert script_key("a") == script_key("é") == "Latin"
    assert script_key(",") == script_key("!") != script_key("—")  # Basic Latin vs general punctuation


# ------------------------------------------------------------------------------ folder to folder


def test_trim_vocabulary_folder(tmp_path):
    tok = wordpiece_tokenizer()
    model = tiny_bert(tok)
    src = tmp_path / "model"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    train = tmp_path / "train.csv"
    pd.DataFrame({"Text": CORPUS + ["Text"], "Label": ["a"] * (len(CORPUS) + 1)}).to_csv(train, index=False)
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"Text": t}) + "\n" for t in HELDOUT), encoding="utf-8")

    out = tmp_path / "trimmed"
    result = trim_vocabulary_folder(src, out, [str(train)], heldout_files=[str(held)])
    assert result["num_texts"] == len(CORPUS)  # the repeated header row was dropped
    assert result["heldout_texts"] == len(HELDOUT)
    assert result["heldout_unk_rate_before"] == 0.0 and 0.0 < result["heldout_unk_rate"] < 1.0
    assert json.loads((out / "vocab_trim.json").read_text())["vocab_size_after"] == result["vocab_size_after"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trimmed")]  # no temp folder left

    loaded_tok = AutoTokenizer.from_pretrained(out)
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert token_strings(loaded_tok, CORPUS) == token_strings(tok, CORPUS)
    assert torch.equal(logits(loaded, loaded_tok, CORPUS), logits(model, tok, CORPUS))

    with pytest.raises(ConfigError):
        trim_vocabulary_folder(src, src, [str(train)])


def test_corpus_files_go_through_the_data_reader(tmp_path):
    """.csv without labels, .jsonl, .txt; repeated headers and blanks dropped; a wrong column names the file."""
    csv = tmp_path / "a.csv"
    csv.write_text('Text\n"one, two"\n\nText\nthree\n', encoding="utf-8")
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"Text": "four"}\n{"Text": null}\n{"Text": "  "}\n', encoding="utf-8")
    txt = tmp_path / "c.txt"
    txt.write_text("five\n\nsix\n", encoding="utf-8")
    assert read_text_column(csv) == ["one, two", "three"]
    assert read_text_column(jsonl) == ["four"]
    assert read_text_column(txt) == ["five", "six"]
    with pytest.raises(DataError, match=r"a\.csv.*no column 'text'.*did you mean 'Text'"):
        read_text_column(csv, "text")
    bad = tmp_path / "d.csv"
    bad.write_bytes(b"Text\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"d\.csv: line 2.*UTF-8"):
        read_text_column(bad)
