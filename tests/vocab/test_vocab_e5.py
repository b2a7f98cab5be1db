"""Vocabulary trimming of the real e5-small-mr (Unigram, 23,021 pieces) on SHC headlines."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from blockprune.vocab import (
    changed_tokenization_rate,
    trim_vocabulary,
    trim_vocabulary_folder,
    unk_rate,
)
from helpers.paths import E5_DIR, SHC_CSV
from helpers.toy_vocab import assert_special_roles, embedded, logits, token_strings

E5 = E5_DIR
SHC_VALID = SHC_CSV


# ------------------------------------------------------------------------- e5-small-mr (Unigram)


def shc_headlines() -> list[str]:
    frame = pd.read_csv(SHC_VALID, dtype=str, keep_default_na=False)
    # valid rows: Devanagari text (skips the repeated header rows and the cp866 mojibake rows)
    return [
        t for t in frame["Text"] if re.search("[\u0900-\u097f]", t) and not re.search("[\u0400-\u04ff\u2500-\u257f]", t)
    ]


needs_e5 = pytest.mark.skipif(not (E5.is_dir() and SHC_VALID.is_file()), reason="e5-small-mr or SHC data not available")


@needs_e5
def test_e5_small_mr_unigram_trim():
    texts = shc_headlines()
    corpus, heldout = texts[:200], texts[1000:1500]
    tok = AutoTokenizer.from_pretrained(E5)
    original = AutoTokenizer.from_pretrained(E5)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(E5, num_labels=12, dtype=torch.float32).eval()
    # full 12-layer logits on 64 headlines (CPU time); the embedding-layer output, the only part
    # trimming touches, on all 200
    sample = corpus[::3][:64]
    before = logits(model, tok, sample)
    before_emb = embedded(model, tok, corpus)

    model, new_tok, stats = trim_vocabulary(model, tok, corpus, verify_samples=0)  # checked below
    assert stats.tokenizer_model == "Unigram"
    assert stats.vocab_size_before == 23021 and stats.vocab_size_after < 3000
    assert stats.embedding_params_before == 23021 * 384
    assert stats.embedding_params_after == stats.vocab_size_after * 384
    assert stats.kept_by_reason["unigram_min_score"] == 1
    assert new_tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert new_tok.convert_ids_to_tokens(len(new_tok) - 1) == "<mask>"
    assert_special_roles(original, new_tok)
    assert token_strings(new_tok, corpus) == token_strings(original, corpus)
    assert torch.equal(embedded(model, new_tok, corpus), before_emb)
    assert torch.equal(logits(model, new_tok, sample), before)

    held_unk = unk_rate(new_tok, heldout)
    assert unk_rate(original, heldout) < 0.001
    assert held_unk < 0.075  # 200 headlines only: unseen words fall to <unk> (0.0709 measured, deterministic)
    print(
        f"\ne5-small-mr: {stats.to_dict()}\nheld-out unk rate {held_unk:.4f}, "
        f"changed {changed_tokenization_rate(original, new_tok, heldout):.3f}"
    )


@needs_e5
def test_e5_small_mr_script_chars_reach_zero_unk():
    texts = shc_headlines()
    corpus, heldout = texts[:200], texts[1000:1500]
    tok = AutoTokenizer.from_pretrained(E5)
    model = AutoModelForSequenceClassification.from_pretrained(E5, num_labels=12, dtype=torch.float32).eval()
    _, new_tok, stats = trim_vocabulary(model, tok, corpus, keep_script_chars=True, verify_samples=4)
    assert stats.max_abs_output_diff == 0.0
    assert stats.kept_by_reason["script_chars"] > 100
    vocab = new_tok.get_vocab()
    assert {"▁", "क", "▁क", "ळ"} <= set(vocab)
    assert unk_rate(new_tok, heldout) < 0.001


@pytest.mark.slow
@needs_e5
def test_e5_small_mr_logits_on_all_200():
    corpus = shc_headlines()[:200]
    tok = AutoTokenizer.from_pretrained(E5)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(E5, num_labels=12, dtype=torch.float32).eval()
    before = logits(model, tok, corpus)
    model, new_tok, _ = trim_vocabulary(model, tok, corpus, verify_samples=0)
    assert torch.equal(logits(model, new_tok, corpus), before)


@pytest.mark.slow
@needs_e5
def test_e5_small_mr_folder_roundtrip(tmp_path):
    texts = shc_headlines()
    train = tmp_path / "train.csv"
    pd.DataFrame({"Text": texts[:1000]}).to_csv(train, index=False)
    held = tmp_path / "held.csv"
    pd.DataFrame({"Text": texts[1000:]}).to_csv(held, index=False)
    out = tmp_path / "e5-trim"
    result = trim_vocabulary_folder(E5, out, [str(train)], heldout_files=[str(held)], keep_script_chars=True)
    assert result["saved_dtype"] == "float16"
    assert result["heldout_unk_rate"] < 0.001
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == result["vocab_size_after"]
    # the saved folder computes what the original model computes: same weights apart from the
    # re-indexed embedding rows (head and pooler copied over, as the original has none)
    original = AutoModelForSequenceClassification.from_pretrained(
        E5, num_labels=model.config.num_labels, dtype=torch.float32
    ).eval()
    original.load_state_dict({k: v for k, v in model.state_dict().items() if "word_embeddings" not in k}, strict=False)
    sample = texts[:64]
    with torch.no_grad():
        assert torch.equal(
            logits(model.eval(), tok, sample), logits(original, AutoTokenizer.from_pretrained(E5), sample)
        )
    print(f"\ne5-small-mr folder trim on 1000 headlines: {result}")
