"""Vocabulary trimming with a WordPiece tokenizer: identity on the corpus, special roles, script
characters, extra and added tokens, trimming twice, a tied MLM head."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from blockprune.errors import ConfigError
from blockprune.vocab import changed_tokenization_rate, trim_vocabulary, unk_rate
from helpers.toy_vocab import (
    CORPUS,
    HELDOUT,
    assert_same_on_corpus,
    assert_special_roles,
    logits,
    tiny_bert,
    token_strings,
    wordpiece_tokenizer,
)

# ------------------------------------------------------------------------------------ WordPiece


def test_wordpiece_identity_roles_and_roundtrip(tmp_path):
    tok = wordpiece_tokenizer()
    model = tiny_bert(tok)
    before = logits(model, tok, CORPUS)
    model, new_tok, stats = trim_vocabulary(model, tok, CORPUS)

    assert isinstance(new_tok, PreTrainedTokenizerFast)
    assert stats.tokenizer_model == "WordPiece"
    assert stats.vocab_size_after < stats.vocab_size_before == len(tok)
    assert len(new_tok) == stats.vocab_size_after == model.config.vocab_size
    assert model.get_input_embeddings().weight.shape == (len(new_tok), 32)
    assert stats.kept_by_reason["special"] == 5 and stats.kept_by_reason["corpus"] > 0
    assert stats.max_abs_output_diff == 0.0 and stats.verified_texts == len(CORPUS)
    d = stats.to_dict()
    assert d["embedding_params_saved"] == (len(tok) - len(new_tok)) * 32
    json.dumps(d)

    assert_same_on_corpus(tok, new_tok, before, model, CORPUS)
    assert_special_roles(tok, new_tok)
    assert model.config.pad_token_id == new_tok.pad_token_id
    batch = new_tok(CORPUS[:3], padding=True, return_tensors="pt")
    short = batch["attention_mask"].sum(1).argmin()
    assert (batch["input_ids"][short][batch["attention_mask"][short] == 0] == new_tok.pad_token_id).all()
    pair = new_tok(CORPUS[0], CORPUS[1], return_token_type_ids=True)
    old_pair = tok(CORPUS[0], CORPUS[1], return_token_type_ids=True)
    assert new_tok.convert_ids_to_tokens(pair["input_ids"]) == tok.convert_ids_to_tokens(old_pair["input_ids"])
    assert pair["token_type_ids"] == old_pair["token_type_ids"]

    # plain transformers round trip
    model.save_pretrained(tmp_path)
    new_tok.save_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert token_strings(loaded_tok, CORPUS) == token_strings(tok, CORPUS)
    assert torch.equal(logits(loaded, loaded_tok, CORPUS), before)

    # held-out text: unknown words become [UNK] where pieces were dropped
    assert unk_rate(tok, HELDOUT) == 0.0
    assert 0.0 < unk_rate(new_tok, HELDOUT) < 1.0
    assert 0.0 < changed_tokenization_rate(tok, new_tok, HELDOUT) <= 1.0
    assert changed_tokenization_rate(tok, new_tok, CORPUS) == 0.0


def test_wordpiece_script_chars_keep_both_forms():
    tok = wordpiece_tokenizer()
    model = tiny_bert(tok)
    _, new_tok, stats = trim_vocabulary(model, tok, CORPUS[:2], keep_script_chars=True)
    vocab = tok.get_vocab()
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c in vocab]
    cont = [f"##{c}" for c in letters if f"##{c}" in vocab]
    assert letters and cont and stats.kept_by_reason["script_chars"] > 0
    new_vocab = new_tok.get_vocab()
    assert all(p in new_vocab for p in letters + cont)
    # every held-out word can now be spelt, so nothing is unknown
    assert unk_rate(new_tok, HELDOUT) == 0.0
    assert unk_rate(trim_vocabulary(tiny_bert(tok), tok, CORPUS[:2])[1], HELDOUT) > 0.0


def test_extra_tokens_kept_and_unknown_extra_rejected():
    tok = wordpiece_tokenizer()
    piece = next(p for p in tok.get_vocab() if p.startswith("##") and len(p) > 3)
    _, new_tok, _ = trim_vocabulary(tiny_bert(tok), tok, ["festivals"], extra_tokens=[piece])
    assert piece in new_tok.get_vocab()
    with pytest.raises(ConfigError, match="not found"):
        trim_vocabulary(tiny_bert(tok), tok, ["festivals"], extra_tokens=["no-such-piece"])


# ----------------------------------------------------------- added tokens, spare rows, repeat


def test_added_tokens_spare_rows_and_trimming_twice():
    tok = wordpiece_tokenizer()
    tok.add_tokens(["marathi"])
    tok.add_special_tokens({"extra_special_tokens": ["<extra1>"]})
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok) + 8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )  # 8 spare rows no id reaches (as in XLM-R)
    model = BertForSequenceClassification(config).eval()
    texts = CORPUS + ["marathi <extra1> festivals"]
    before, before3 = logits(model, tok, texts), logits(model, tok, texts[:3])
    model, new_tok, stats = trim_vocabulary(model, tok, texts)
    assert stats.embedding_rows_before == len(tok) + 8 and stats.embedding_rows_after == len(new_tok)
    assert "<extra1>" in new_tok.all_special_tokens and "marathi" in new_tok.get_vocab()
    assert token_strings(new_tok, texts)[-1] == ["[CLS]", "marathi", "<extra1>", "festivals", "[SEP]"]
    assert torch.equal(logits(model, new_tok, texts), before)

    model, again, stats2 = trim_vocabulary(model, new_tok, texts[:3])
    assert stats2.vocab_size_before == len(new_tok) > stats2.vocab_size_after
    assert token_strings(again, texts[:3]) == token_strings(tok, texts[:3])
    assert torch.equal(logits(model, again, texts[:3]), before3)


# ------------------------------------------------------------------------------- tied MLM head


def test_tied_mlm_head_stays_tied(tmp_path):
    tok = wordpiece_tokenizer()
    model = tiny_bert(tok, cls=BertForMaskedLM, tie_word_embeddings=True)
    emb, dec = model.get_input_embeddings(), model.get_output_embeddings()
    assert dec.weight.data_ptr() == emb.weight.data_ptr()
    with torch.no_grad():
        dec.bias.normal_()  # make the output bias matter
    batch = tok(CORPUS, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits

    model, new_tok, stats = trim_vocabulary(model, tok, CORPUS)
    n = len(new_tok)
    emb, dec = model.get_input_embeddings(), model.get_output_embeddings()
    assert stats.output_embeddings == "tied"
    assert dec.weight is emb.weight and dec.weight.data_ptr() == emb.weight.data_ptr()
    assert dec.weight.shape == (n, 32) and dec.bias.shape == (n,) and dec.out_features == n
    assert model.cls.predictions.bias.data_ptr() == dec.bias.data_ptr()
    assert stats.embedding_params_after == n * 32 + n

    keep = [tok.convert_tokens_to_ids(t) for t in new_tok.convert_ids_to_tokens(list(range(n)))]
    with torch.no_grad():
        after = model(**new_tok(CORPUS, padding=True, return_tensors="pt")).logits
    assert torch.equal(after, before[..., keep])

    model.save_pretrained(tmp_path)
    new_tok.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(loaded(**new_tok(CORPUS, padding=True, return_tensors="pt")).logits, after)
