"""Small tokenizers (WordPiece, byte-level and plain BPE, Unigram) trained on toy sentences,
tiny models for them, and the checks every vocabulary-trimming test makes."""

from __future__ import annotations

import itertools
import json

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

_SUBJECTS = ["the farmer", "a teacher", "my neighbour", "the old doctor", "our minister", "every student"]
_VERBS = ["reads", "writes about", "talks about", "remembers", "questions", "celebrates"]
_OBJECTS = ["the monsoon rains", "cricket matches", "village elections", "new bridges", "rising prices", "festivals"]
SENTENCES = [
    f"{s.capitalize()} {v} {o}{p}"
    for (s, v, o), p in zip(
        itertools.product(_SUBJECTS, _VERBS, _OBJECTS), itertools.cycle([".", "!", "?", ", again."])
    )
][::5]
CORPUS = SENTENCES[:12]
HELDOUT = SENTENCES[12:] + ["Minister debates unseen roads!"]


# the special-token roles of RoBERTa-style tokenizers (byte-level BPE, Unigram / SentencePiece)
_ROBERTA_SPECIALS = dict(
    bos_token="<s>",
    eos_token="</s>",
    sep_token="</s>",
    cls_token="<s>",
    unk_token="<unk>",
    pad_token="<pad>",
    mask_token="<mask>",
)


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
    return _hf(tok, **_ROBERTA_SPECIALS)


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
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return _hf(tok, **_ROBERTA_SPECIALS)


def tiny_bert(tokenizer, cls=BertForSequenceClassification, **kw):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=3,
        **kw,
    )
    return cls(config).eval()


def tiny_roberta(tokenizer):
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=3,
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
