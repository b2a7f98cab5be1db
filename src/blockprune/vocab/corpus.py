"""Stage 2: the corpus, encoded once with the original tokenizer, and how well it fits it.

The ids are kept (compactly) so the trimmed tokenizer can later be checked against them on every
text; a corpus that is mostly unknown tokens is refused, because trimming to it would keep
almost nothing and the cause is nearly always the wrong file, column, encoding or tokenizer.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from blockprune.errors import BlockpruneError
from blockprune.vocab.tokenizer_json import encodings, fresh_backend
from blockprune.vocab.vocabulary import Vocabulary

MAX_UNK_FRACTION = 0.5


def clean_corpus(corpus: Iterable[str]) -> list[str]:
    """The non-blank texts of ``corpus`` (``None`` skipped); anything but strings is an error."""
    if isinstance(corpus, str):
        raise BlockpruneError("corpus must be an iterable of texts, not a single string; wrap it in a list")
    texts = []
    for t in corpus:
        if t is None:
            continue
        if not isinstance(t, str):
            raise BlockpruneError(f"corpus items must be strings, got {type(t).__name__}: {t!r:.80}")
        if t.strip():
            texts.append(t)
    return texts


def corpus_texts(corpus: Iterable[str]) -> list[str]:
    """:func:`clean_corpus`, refusing an empty result (nothing to trim to)."""
    texts = clean_corpus(corpus)
    if not texts:
        raise BlockpruneError(
            "the vocabulary-trimming corpus is empty (no non-blank texts); point it at the training "
            "texts of the task (for example the train split's text column)"
        )
    return texts


@dataclass
class CorpusEncoding:
    """The original tokenizer's ids on every text, and the pieces it produced (special tokens aside)."""

    ids: list[array] = field(default_factory=list)  # compact: a corpus may have hundreds of thousands of texts
    produced: set[int] = field(default_factory=set)
    n_tokens: int = 0
    n_unk: int = 0

    @property
    def unk_rate(self) -> float:
        return self.n_unk / self.n_tokens


def encode_corpus(vocab: Vocabulary, texts: Sequence[str]) -> CorpusEncoding:
    """Encode ``texts``; refuse a corpus that yields no pieces or mostly unknown tokens."""
    enc_all = CorpusEncoding()
    for enc in encodings(fresh_backend(vocab.json_text), texts):
        enc_all.ids.append(array("l", enc.ids))
        for i, special in zip(enc.ids, enc.special_tokens_mask):
            if special:
                continue
            enc_all.produced.add(i)
            enc_all.n_tokens += 1
            enc_all.n_unk += i == vocab.unk_id
    if enc_all.n_tokens == 0:
        raise BlockpruneError(
            f"the tokenizer produced no pieces (other than special tokens) on the {len(texts)} corpus "
            f"texts (first: {texts[0]!r:.80}); check that the corpus is the text column, and that the "
            f"tokenizer's normaliser ({vocab.normalizer}) and pre-tokeniser ({vocab.pre_tokenizer}) keep its characters"
        )
    if enc_all.unk_rate > MAX_UNK_FRACTION:
        unk_texts = [t for t, ids in zip(texts, enc_all.ids) if vocab.unk_id in ids][:3]
        raise BlockpruneError(
            f"the corpus does not match this tokenizer: {enc_all.n_unk} of {enc_all.n_tokens} pieces "
            f"({enc_all.unk_rate:.0%}) are the unknown token {vocab.id_to_piece.get(vocab.unk_id)!r} "
            f"(examples: {', '.join(repr(t[:60]) for t in unk_texts)}). Check that the corpus is in a "
            f"language and script this model covers, that the file was decoded with the right "
            f"encoding (mojibake), that the text column is the right one, and that the tokenizer "
            f"(normaliser: {vocab.normalizer}) is the one the model was trained with."
        )
    return enc_all


def _token_lists(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def unk_rate(tokenizer: Any, texts: Iterable[str]) -> float:
    """Fraction of the tokens produced on ``texts`` (special tokens excluded) that are the unknown token."""
    texts = clean_corpus(texts)
    unk = getattr(tokenizer, "unk_token_id", None)
    total = hits = 0
    for ids in _token_lists(tokenizer, texts):
        total += len(ids)
        if unk is not None:
            hits += sum(1 for i in ids if i == unk)
    return hits / total if total else 0.0


def changed_tokenization_rate(orig_tok: Any, new_tok: Any, texts: Iterable[str]) -> float:
    """Fraction of ``texts`` that the two tokenizers split into different token strings."""
    texts = clean_corpus(texts)
    if not texts:
        return 0.0
    old = [orig_tok.convert_ids_to_tokens(ids) for ids in _token_lists(orig_tok, texts)]
    new = [new_tok.convert_ids_to_tokens(ids) for ids in _token_lists(new_tok, texts)]
    return sum(a != b for a, b in zip(old, new)) / len(texts)
