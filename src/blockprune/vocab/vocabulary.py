"""Stage 1: read what the original tokenizer holds (every id, its piece, the unknown token)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from blockprune.errors import BlockpruneError
from blockprune.vocab.rules import RULES, SUPPORTED_MODELS, ModelRule

# Config fields that hold token ids (an int or a list of ints) and must follow the re-indexing.
CONFIG_ID_KEYS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
    "decoder_start_token_id",
)


@dataclass
class Vocabulary:
    """The original tokenizer as trimming reads it from tokenizer.json."""

    json_text: str  # tokenizer.json as the backend wrote it
    data: dict  # ... and parsed
    kind: str  # its model type: WordPiece, BPE, Unigram, WordLevel
    rule: ModelRule
    id_to_piece: dict[int, str]  # model vocabulary and added tokens
    piece_to_id: dict[str, int]
    size: int  # number of ids (the largest + 1)
    unk_id: int | None
    added_ids: set[int]

    @property
    def normalizer(self) -> str:
        return (self.data.get("normalizer") or {}).get("type", "none")

    @property
    def pre_tokenizer(self) -> str:
        return (self.data.get("pre_tokenizer") or {}).get("type", "none")

    def model_pieces(self) -> list[str]:
        """The pieces of the tokenizer model's own vocabulary (added tokens excluded)."""
        return list(self.rule.pieces(self.data["model"]).values())


def all_pieces(data: dict) -> dict[int, str]:
    """Every id of the tokenizer (model vocabulary and added tokens) and its piece."""
    pieces = RULES[data["model"]["type"]].pieces(data["model"])
    for tok in data.get("added_tokens") or []:
        pieces[int(tok["id"])] = tok["content"]
    return pieces


def read_vocabulary(backend: Any) -> Vocabulary:
    """Parse the ``tokenizers`` backend's JSON; refuse a model type trimming has no rule for."""
    json_text = backend.to_str()
    data = json.loads(json_text)
    kind = data["model"]["type"]
    if kind not in RULES:
        raise BlockpruneError(
            f"vocabulary trimming supports tokenizer models {', '.join(SUPPORTED_MODELS)}; this "
            f"tokenizer's tokenizer.json has model type {kind!r}"
        )
    id_to_piece = all_pieces(data)
    piece_to_id = {p: i for i, p in id_to_piece.items()}
    rule = RULES[kind]
    return Vocabulary(
        json_text=json_text,
        data=data,
        kind=kind,
        rule=rule,
        id_to_piece=id_to_piece,
        piece_to_id=piece_to_id,
        size=max(id_to_piece) + 1,
        unk_id=rule.unk_id(data["model"], piece_to_id),
        added_ids={int(t["id"]) for t in data.get("added_tokens") or []},
    )
