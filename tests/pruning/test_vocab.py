"""Vocabulary trimming: a pure re-indexing of tokenizer and embeddings (WordPiece, BPE, Unigram)."""

from __future__ import annotations

import itertools
import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from blockprune.errors import BlockpruneError, ConfigError
from blockprune.pruning.vocab import (
    changed_tokenization_rate,
    script_key,
    trim_vocabulary,
    trim_vocabulary_folder,
    unk_rate,
)
from helpers.paths import E5_DIR, SHC_CSV

E5 = E5_DIR
SHC_VALID = SHC_CSV

_SUBJECTS = ["the farmer", "a teacher", "my neighbour", "the old doctor", "our minister", "every student"]
_VERBS = ["reads", "writes about", "talks about", "remembers", "questions", "celebrates"]
_OBJECTS = ["the monsoon rains", "cricket matches", "village elections", "new bridges", "rising prices", "festivals"]
SENTENCES = [
    f"{s.capitalize()} {v} {o}{p}"
    for (s, v, o), p in zip(itertools.product(_SUBJECTS, _VERBS, _OBJECTS), itertools.cycle([".", "!", "?", ", again."]))
][::5]
CORPUS = SENTENCES[:12]
HELDOUT = SENTENCES[12:] + ["Minister debates unseen roads!"]


def _hf(backend: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=64, **special)


def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=160, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return _hf(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def byte_bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    return _hf(tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
               pad_token="<pad>", mask_token="<mask>")


def plain_bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(
        vocab_size=250, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], end_of_word_suffix="</w>"
    )
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return _hf(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def unigram_tokenizer(byte_fallback: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", shrinking_factor=0.9
    )
    tok.train_from_iterator(SENTENCES, trainer)
    data = json.loads(tok.to_str())
    if byte_fallback:
        data["model"]["byte_fallback"] = True
        data["model"]["vocab"] += [[f"<0x{b:02X}>", -30.0] for b in range(256)]
    tok = Tokenizer.from_str(json.dumps(data))
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return _hf(tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
               pad_token="<pad>", mask_token="<mask>")


def tiny_bert(tokenizer, cls=BertForSequenceClassification, **kw):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, num_labels=3, **kw,
    )
    return cls(config).eval()


def tiny_roberta(tokenizer):
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=3,
    )
    return RobertaForSequenceClassification(config).eval()


@torch.no_grad()
def logits(model, tokenizer, texts, batch_size=32):
    """Logits in input order; texts are batched by length (less padding, faster on CPU)."""
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [None] * len(texts)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt")
        for i, row in zip(idx, model(**batch).logits):
            out[i] = row
    return torch.stack(out)


@torch.no_grad()
def embedded(model, tokenizer, texts):
    """Output of the embedding layer (word + position + type embeddings, LayerNorm) for a padded batch."""
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    return model.base_model.embeddings(input_ids=batch["input_ids"])


def token_strings(tokenizer, texts):
    return [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(list(texts))["input_ids"]]


def assert_same_on_corpus(old_tok, new_tok, before, model, texts):
    assert token_strings(new_tok, texts) == token_strings(old_tok, texts)
    assert [new_tok.tokenize(t) for t in texts] == [old_tok.tokenize(t) for t in texts]
    assert torch.equal(logits(model, new_tok, texts), before)


def assert_special_roles(old_tok, new_tok):
    for role in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token"):
        name = getattr(old_tok, role)
        assert getattr(new_tok, role) == name
        if name is not None:
            assert new_tok.convert_ids_to_tokens(getattr(new_tok, role + "_id")) == name
    assert sorted(new_tok.all_special_tokens) == sorted(old_tok.all_special_tokens)


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
    _, new_tok, stats = trim_vocabulary(tiny_bert(tok), tok, ["festivals"], extra_tokens=[piece])
    assert piece in new_tok.get_vocab()
    with pytest.raises(ConfigError, match="not found"):
        trim_vocabulary(tiny_bert(tok), tok, ["festivals"], extra_tokens=["no-such-piece"])


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


# ----------------------------------------------------------- added tokens, spare rows, repeat


def test_added_tokens_spare_rows_and_trimming_twice():
    tok = wordpiece_tokenizer()
    tok.add_tokens(["marathi"])
    tok.add_special_tokens({"extra_special_tokens": ["<extra1>"]})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok) + 8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)  # 8 spare rows no id reaches (as in XLM-R)
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


# ------------------------------------------------------------------------- e5-small-mr (Unigram)


def shc_headlines() -> list[str]:
    frame = pd.read_csv(SHC_VALID, dtype=str, keep_default_na=False)
    # valid rows: Devanagari text (skips the repeated header rows and the cp866 mojibake rows)
    return [t for t in frame["Text"] if re.search("[\u0900-\u097f]", t) and not re.search("[\u0400-\u04ff\u2500-\u257f]", t)]


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
    assert held_unk < 0.15  # 200 headlines only: unseen words fall to <unk> (about 5 %)
    print(f"\ne5-small-mr: {stats.to_dict()}\nheld-out unk rate {held_unk:.4f}, "
          f"changed {changed_tokenization_rate(original, new_tok, heldout):.3f}")


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
    print(f"\ne5-small-mr folder trim on 1000 headlines: {result}")
