"""Vocabulary trimming with BPE (byte-level RoBERTa-style and plain with an end-of-word suffix)
and Unigram tokenizers: identity on the corpus, merges, byte alphabet, byte fallback."""

from __future__ import annotations

import json
import re

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from blockprune.vocab import trim_vocabulary, unk_rate
from helpers.toy_vocab import (
    CORPUS,
    HELDOUT,
    assert_same_on_corpus,
    assert_special_roles,
    byte_bpe_tokenizer,
    logits,
    plain_bpe_tokenizer,
    tiny_bert,
    tiny_roberta,
    unigram_tokenizer,
)

# ------------------------------------------------------------------------------------------ BPE


def test_byte_level_bpe_roberta_identity(tmp_path):
    tok = byte_bpe_tokenizer()
    model = tiny_roberta(tok)
    before = logits(model, tok, CORPUS)
    model, new_tok, stats = trim_vocabulary(model, tok, CORPUS)
    assert stats.tokenizer_model == "BPE"
    assert stats.kept_by_reason["byte_alphabet"] > 0 and stats.kept_by_reason["bpe_merge_parts"] > 0
    assert stats.vocab_size_after < stats.vocab_size_before
    assert_same_on_corpus(tok, new_tok, before, model, CORPUS)
    assert_special_roles(tok, new_tok)
    # RoBERTa numbers positions from the pad id: it must not have moved
    assert new_tok.pad_token_id == tok.pad_token_id == model.config.pad_token_id
    # byte alphabet kept: held-out text never loses characters
    assert new_tok.decode(new_tok(HELDOUT[-1])["input_ids"], skip_special_tokens=True) == HELDOUT[-1]

    merges = json.loads(new_tok.backend_tokenizer.to_str())["model"]["merges"]
    vocab = new_tok.get_vocab()
    assert merges and all(a in vocab and b in vocab and a + b in vocab for a, b in merges)

    model.save_pretrained(tmp_path)
    new_tok.save_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(logits(loaded, loaded_tok, CORPUS), before)


def test_plain_bpe_identity():
    tok = plain_bpe_tokenizer()
    model = tiny_bert(tok)
    before = logits(model, tok, CORPUS)
    model, new_tok, stats = trim_vocabulary(model, tok, CORPUS)
    assert stats.vocab_size_after < stats.vocab_size_before
    assert_same_on_corpus(tok, new_tok, before, model, CORPUS)
    assert_special_roles(tok, new_tok)


def test_plain_bpe_script_chars_keep_suffix_forms():
    tok = plain_bpe_tokenizer()
    _, new_tok, stats = trim_vocabulary(tiny_bert(tok), tok, CORPUS[:1], keep_script_chars=True)
    single = [p for p in tok.get_vocab() if re.fullmatch(r"[a-z](</w>)?", p)]
    assert any(p.endswith("</w>") for p in single) and stats.kept_by_reason["script_chars"] > 0
    assert set(single) <= set(new_tok.get_vocab())
    assert unk_rate(new_tok, HELDOUT) == 0.0


# -------------------------------------------------------------------------------------- Unigram


def test_unigram_identity_without_real_model():
    tok = unigram_tokenizer()
    model = tiny_bert(tok)
    before = logits(model, tok, CORPUS)
    model, new_tok, stats = trim_vocabulary(model, tok, CORPUS[:6] + CORPUS[6:])
    assert stats.tokenizer_model == "Unigram" and stats.vocab_size_after < stats.vocab_size_before
    assert stats.kept_by_reason["unigram_min_score"] <= 1
    assert_same_on_corpus(tok, new_tok, before, model, CORPUS)
    assert_special_roles(tok, new_tok)
    data = json.loads(new_tok.backend_tokenizer.to_str())
    assert data["model"]["vocab"][data["model"]["unk_id"]][0] == "<unk>"


def test_unigram_byte_fallback_pieces_kept():
    tok = unigram_tokenizer(byte_fallback=True)
    _, new_tok, stats = trim_vocabulary(tiny_bert(tok), tok, CORPUS[:3])
    assert stats.kept_by_reason["byte_fallback"] == 256
    text = "Zürich"
    assert unk_rate(new_tok, [text]) == 0.0 and "<0xC3>" in new_tok.tokenize(text)
