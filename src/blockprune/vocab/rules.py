"""Per tokenizer model (WordPiece, BPE, Unigram, WordLevel): a table of what trimming must know.

One row per ``model.type`` of tokenizer.json: how its vocabulary numbers the pieces, which id is
the unknown token, what else the model needs to reproduce the corpus exactly, and how its JSON is
rebuilt from the kept ids. Why the extras keep the tokenization unchanged:

- WordPiece / WordLevel need nothing more: the longest match (or the whole word) it took is kept.
- BPE applies the lowest-ranked applicable merge; the parts of every merge that builds a kept
  piece are kept (recursively) with their relative ranks, and byte-level BPE keeps its 256-symbol
  byte alphabet.
- Unigram keeps its lowest-scoring piece: the unknown-token score (``min_score - 10``) is derived
  from it, so a removed single character still scores below every kept piece.

A new model type is one more row in :data:`RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from blockprune.errors import BlockpruneError
from blockprune.vocab.tokenizer_json import is_byte_level

Keep = Callable[[Iterable[int | None], str], None]  # keep these ids under this reason


@dataclass(frozen=True)
class ModelRule:
    """How one tokenizer model type is read, completed and rebuilt."""

    pieces: Callable[[dict], dict[int, str]]  # model JSON -> {id: piece}, in vocabulary order
    unk_id: Callable[[dict, Mapping[str, int]], int | None]  # model JSON, piece -> id
    required: Callable[[dict, Mapping[str, int], Mapping[int, str], Keep], None]  # data, piece->id, kept so far
    rebuild: Callable[[dict, Mapping[int, int]], None]  # model JSON (a copy) edited for old -> new ids


# ---------------------------------------------------------------- vocabularies as {piece: id}


def _dict_pieces(model: dict) -> dict[int, str]:
    return {int(i): p for p, i in model["vocab"].items()}


def _token_unk(model: dict, piece_to_id: Mapping[str, int]) -> int | None:
    unk = model.get("unk_token")
    return piece_to_id.get(unk) if unk is not None else None


def _nothing_more(data: dict, piece_to_id: Mapping[str, int], kept: Mapping[int, str], keep: Keep) -> None:
    return None


def _rebuild_dict(model: dict, new_id: Mapping[int, int]) -> None:
    model["vocab"] = {p: new_id[i] for p, i in model["vocab"].items() if i in new_id}


# ---------------------------------------------------------------- BPE


def bytes_to_unicode() -> list[str]:
    """The GPT-2 byte-level alphabet: one printable character per byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _merge_parts(merge: Any) -> tuple[str, str]:
    if isinstance(merge, str):
        a, b = merge.split(" ", 1)
        return a, b
    return merge[0], merge[1]


def _merge_result(a: str, b: str, prefix: str | None) -> str:
    # as tokenizers builds it: the continuation prefix of the right part is dropped
    return a + (b[len(prefix) :] if prefix else b)


def _bpe_required(data: dict, piece_to_id: Mapping[str, int], kept: Mapping[int, str], keep: Keep) -> None:
    """The byte alphabet (byte-level BPE) and the parts of every merge that builds a kept piece."""
    if is_byte_level(data):
        keep((piece_to_id.get(c) for c in bytes_to_unicode()), "byte_alphabet")
    model = data["model"]
    prefix = model.get("continuing_subword_prefix")
    producers: dict[str, list[tuple[str, str]]] = {}
    for merge in model.get("merges") or []:
        a, b = _merge_parts(merge)
        producers.setdefault(_merge_result(a, b, prefix), []).append((a, b))
    id_to = {i: p for p, i in piece_to_id.items()}
    stack = [id_to[i] for i in kept if i in id_to]
    while stack:
        piece = stack.pop()
        for a, b in producers.get(piece, ()):
            for part in (a, b):
                i = piece_to_id.get(part)
                if i is not None and i not in kept:
                    keep([i], "bpe_merge_parts")
                    stack.append(part)


def _rebuild_bpe(model: dict, new_id: Mapping[int, int]) -> None:
    """The kept vocabulary, and the merges whose parts and result are all kept (ranks in order)."""
    _rebuild_dict(model, new_id)
    vocab = set(model["vocab"])
    prefix = model.get("continuing_subword_prefix")
    kept = []
    for merge in model.get("merges") or []:
        a, b = _merge_parts(merge)
        if a in vocab and b in vocab and _merge_result(a, b, prefix) in vocab:
            kept.append(merge)
    model["merges"] = kept


# ---------------------------------------------------------------- Unigram: a list of [piece, score]


def _unigram_pieces(model: dict) -> dict[int, str]:
    return {i: entry[0] for i, entry in enumerate(model["vocab"])}


def _unigram_unk(model: dict, piece_to_id: Mapping[str, int]) -> int | None:
    return model.get("unk_id")


def _unigram_required(data: dict, piece_to_id: Mapping[str, int], kept: Mapping[int, str], keep: Keep) -> None:
    scores = [e[1] for e in data["model"]["vocab"]]
    keep([min(range(len(scores)), key=scores.__getitem__)], "unigram_min_score")


def _rebuild_unigram(model: dict, new_id: Mapping[int, int]) -> None:
    vocab = model["vocab"]
    kept = [i for i in range(len(vocab)) if i in new_id]
    if [new_id[i] for i in kept] != list(range(len(kept))):
        raise BlockpruneError("unexpected tokenizer layout: added tokens interleave the Unigram vocabulary")
    model["vocab"] = [vocab[i] for i in kept]
    if model.get("unk_id") is not None:
        model["unk_id"] = new_id[model["unk_id"]]


RULES: dict[str, ModelRule] = {
    "WordPiece": ModelRule(_dict_pieces, _token_unk, _nothing_more, _rebuild_dict),
    "BPE": ModelRule(_dict_pieces, _token_unk, _bpe_required, _rebuild_bpe),
    "Unigram": ModelRule(_unigram_pieces, _unigram_unk, _unigram_required, _rebuild_unigram),
    "WordLevel": ModelRule(_dict_pieces, _token_unk, _nothing_more, _rebuild_dict),
}
SUPPORTED_MODELS = tuple(RULES)
