"""Stage 3: which ids to keep, each under the first reason that keeps it.

Kept: the special and added tokens (and the ids the model config or the post-processor names),
every piece produced on the corpus, ``extra_tokens``, optionally the single-character pieces of
the scripts seen (``keep_script_chars``), the ``<0xNN>`` pieces of a byte-fallback model, and
what the tokenizer model itself needs (:data:`blockprune.vocab.rules.RULES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from blockprune.errors import BlockpruneError, ConfigError
from blockprune.vocab.corpus import CorpusEncoding
from blockprune.vocab.scripts import script_key
from blockprune.vocab.tokenizer_json import (
    is_byte_level,
    markers,
    processor_ids,
    strip_markers,
)
from blockprune.vocab.vocabulary import CONFIG_ID_KEYS, Vocabulary

REASONS = (
    "special",
    "corpus",
    "extra",
    "script_chars",
    "bpe_merge_parts",
    "byte_alphabet",
    "byte_fallback",
    "unigram_min_score",
)


def choose_pieces(
    vocab: Vocabulary,
    tokenizer: Any,
    model_config: Any,
    encoded: CorpusEncoding,
    texts: Sequence[str],
    *,
    extra_tokens: Iterable[str] = (),
    keep_script_chars: bool = False,
) -> dict[int, str]:
    """``{old id: reason}`` for every id to keep; the first reason a piece is kept under is counted."""
    reason_of: dict[int, str] = {}

    def keep(ids: Iterable[int | None], reason: str) -> None:
        for i in ids:
            if i is not None and 0 <= i < vocab.size and i in vocab.id_to_piece:
                reason_of.setdefault(int(i), reason)

    special = special_ids(vocab, tokenizer, model_config)
    keep(sorted(special), "special")
    if not (encoded.produced - special):
        raise BlockpruneError(
            f"the tokenizer produced only special tokens on the {len(texts)} corpus texts (first: "
            f"{texts[0]!r:.80}); check the text column and the tokenizer's normaliser ({vocab.normalizer})"
        )
    keep(sorted(encoded.produced), "corpus")
    keep(_extra_ids(vocab, extra_tokens), "extra")
    if keep_script_chars and not is_byte_level(vocab.data):
        keep(_script_char_ids(vocab, encoded.produced - special), "script_chars")
    if vocab.data["model"].get("byte_fallback"):
        keep((vocab.piece_to_id.get(f"<0x{b:02X}>") for b in range(256)), "byte_fallback")
    vocab.rule.required(vocab.data, vocab.piece_to_id, reason_of, keep)
    return reason_of


def special_ids(vocab: Vocabulary, tokenizer: Any, model_config: Any) -> set[int]:
    """Added tokens, the wrapper's special ids, the post-processor's, unk, padding and config ids."""
    data = vocab.data
    special = set(vocab.added_ids) | set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(processor_ids(data.get("post_processor")))
    if vocab.unk_id is not None:
        special.add(vocab.unk_id)
    if data.get("padding"):
        special.add(int(data["padding"]["pad_id"]))
    for key in CONFIG_ID_KEYS:
        value = getattr(model_config, key, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and 0 <= v < vocab.size:
                special.add(v)
    return special


def _extra_ids(vocab: Vocabulary, extra_tokens: Iterable[str]) -> list[int]:
    extra = list(extra_tokens)
    missing = [t for t in extra if t not in vocab.piece_to_id]
    if missing:
        raise ConfigError(
            f"extra_tokens must be pieces of the tokenizer's vocabulary; not found: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. To keep the pieces of a word, add the word to the corpus."
        )
    return [vocab.piece_to_id[t] for t in extra]


def _script_char_ids(vocab: Vocabulary, seen_ids: set[int]) -> list[int]:
    """Single-character pieces (plain and word-boundary forms) of every script in the seen pieces."""
    prefixes, suffixes = markers(vocab.data)
    seen_scripts = set()
    for i in seen_ids:
        for ch in strip_markers(vocab.id_to_piece[i], prefixes, suffixes):
            seen_scripts.add(script_key(ch))
    chosen = []
    for p in vocab.model_pieces():
        core = strip_markers(p, prefixes, suffixes)
        if (len(core) == 1 and script_key(core) in seen_scripts) or (core == "" and p in prefixes):
            chosen.append(vocab.piece_to_id[p])
    return chosen


def count_reasons(reason_of: dict[int, str]) -> dict[str, int]:
    counts = {r: 0 for r in REASONS}
    for r in reason_of.values():
        counts[r] += 1
    return counts
