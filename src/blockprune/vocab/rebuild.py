"""Stage 4: the trimmed tokenizer, rebuilt from tokenizer.json and checked on every corpus text.

It is a pure re-indexing: the kept ids are renumbered in their original order, so on the corpus
the trimmed tokenizer must give the same token strings and the re-indexed ids; that is checked
here, and the transformers wrapper keeps the original's special-token roles and settings.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from blockprune.errors import BlockpruneError
from blockprune.vocab.corpus import CorpusEncoding
from blockprune.vocab.tokenizer_json import encodings, fresh_backend, remap_processor
from blockprune.vocab.vocabulary import Vocabulary, all_pieces

_WRAPPER_SETTINGS = ("model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces")


def rebuild_json(vocab: Vocabulary, new_id: Mapping[int, int]) -> tuple[dict, str]:
    """tokenizer.json (parsed, and as text) with only the ids in ``new_id`` (old -> new), everything
    that names an id remapped."""
    new_data = copy.deepcopy(vocab.data)
    vocab.rule.rebuild(new_data["model"], new_id)
    for tok in new_data.get("added_tokens") or []:
        tok["id"] = new_id[int(tok["id"])]
    remap_processor(new_data.get("post_processor"), new_id)
    if new_data.get("padding"):
        new_data["padding"]["pad_id"] = new_id[int(new_data["padding"]["pad_id"])]
    return new_data, json.dumps(new_data, ensure_ascii=False)


def check_same_tokens(
    vocab: Vocabulary,
    new_data: dict,
    new_json: str,
    new_id: Mapping[int, int],
    texts: Sequence[str],
    encoded: CorpusEncoding,
) -> None:
    """Every kept id names the same piece, and every corpus text gets the same (re-indexed) tokens."""
    new_pieces = all_pieces(new_data)
    bad = [old for old in new_id if new_pieces.get(new_id[old]) != vocab.id_to_piece[old]]
    if bad:
        raise BlockpruneError(f"internal error: re-indexed vocabulary disagrees at old ids {bad[:5]}")
    for n, (ids, new_enc) in enumerate(zip(encoded.ids, encodings(fresh_backend(new_json), texts))):
        old_tokens = [vocab.id_to_piece[i] for i in ids]
        if new_enc.ids != [new_id[i] for i in ids] or new_enc.tokens != old_tokens:
            raise BlockpruneError(
                f"internal error: the trimmed tokenizer splits corpus text {n} differently "
                f"({texts[n]!r:.80}): {old_tokens[:20]} -> {new_enc.tokens[:20]}"
            )


def wrap_tokenizer(original: Any, new_json: str, size: int) -> Any:
    """A ``PreTrainedTokenizerFast`` around ``new_json`` with the original's special tokens and settings."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {}
    for name, value in (getattr(original, "special_tokens_map", None) or {}).items():
        if value is not None:
            kwargs[name] = value
    extra_special = [str(t) for t in getattr(original, "extra_special_tokens", None) or []]
    if extra_special:
        kwargs["extra_special_tokens"] = extra_special
    for name in _WRAPPER_SETTINGS:
        if hasattr(original, name):
            kwargs[name] = getattr(original, name)
    if getattr(original, "model_input_names", None):
        kwargs["model_input_names"] = list(original.model_input_names)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(new_json), **kwargs)
    if len(wrapped) != size:
        raise BlockpruneError(
            f"internal error: the trimmed tokenizer has {len(wrapped)} ids, expected {size} "
            f"(a special token of the original is missing from its tokenizer.json?)"
        )
    return wrapped
