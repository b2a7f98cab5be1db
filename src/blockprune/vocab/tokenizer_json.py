"""Reading a fast tokenizer's ``tokenizer.json``: its components, markers and special-token ids.

Trimming works on the serialised tokenizer (``backend_tokenizer.to_str()``), not on the
transformers wrapper, because only the JSON holds everything that names a token id: the model's
vocabulary, the added tokens, the post-processor's templates and the padding settings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from blockprune.errors import BlockpruneError

CHUNK = 2048  # texts per encode_batch call


def require_fast(tokenizer: Any) -> Any:
    """The ``tokenizers`` backend of ``tokenizer``; a slow tokenizer has no tokenizer.json to trim."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        raise BlockpruneError(
            f"vocabulary trimming needs a fast tokenizer (one backed by tokenizer.json), but got "
            f"{type(tokenizer).__name__}, a slow (Python) tokenizer. Load it with "
            f"AutoTokenizer.from_pretrained(..., use_fast=True), or convert it once with "
            f"transformers' convert_slow_tokenizer and save tokenizer.json next to the model."
        )
    return backend


def walk(node: Any, type_name: str) -> list[dict]:
    """All sub-dicts of a tokenizer.json component whose ``type`` is ``type_name``."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == type_name:
            found.append(node)
        for v in node.values():
            found.extend(walk(v, type_name))
    elif isinstance(node, list):
        for v in node:
            found.extend(walk(v, type_name))
    return found


def is_byte_level(data: dict) -> bool:
    return bool(walk(data.get("pre_tokenizer"), "ByteLevel"))


def processor_ids(node: Any) -> list[int]:
    """Token ids named by a post-processor (TemplateProcessing, Bert/RobertaProcessing, Sequence)."""
    ids: list[int] = []
    if not isinstance(node, dict):
        return ids
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for spec in (node.get("special_tokens") or {}).values():
            ids.extend(int(i) for i in spec.get("ids", []))
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if node.get(key) is not None:
                ids.append(int(node[key][1]))
    elif kind == "Sequence":
        for sub in node.get("processors", []):
            ids.extend(processor_ids(sub))
    return ids


def remap_processor(node: Any, new_id: dict[int, int]) -> None:
    """Renumber, in place, the token ids a post-processor names."""
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for spec in (node.get("special_tokens") or {}).values():
            spec["ids"] = [new_id[int(i)] for i in spec.get("ids", [])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if node.get(key) is not None:
                node[key] = [node[key][0], new_id[int(node[key][1])]]
    elif kind == "Sequence":
        for sub in node.get("processors", []):
            remap_processor(sub, new_id)


def markers(data: dict) -> tuple[list[str], list[str]]:
    """Word-boundary prefixes and suffixes a piece may carry (``▁``, ``##``, ``</w>``)."""
    model = data["model"]
    prefixes, suffixes = [], []
    for node in walk(data.get("pre_tokenizer"), "Metaspace"):
        prefixes.append(node.get("replacement", "\u2581"))
    if model.get("continuing_subword_prefix"):
        prefixes.append(model["continuing_subword_prefix"])
    if model.get("end_of_word_suffix"):
        suffixes.append(model["end_of_word_suffix"])
    return sorted(set(prefixes), key=len, reverse=True), sorted(set(suffixes), key=len, reverse=True)


def strip_markers(piece: str, prefixes: Sequence[str], suffixes: Sequence[str]) -> str:
    for p in prefixes:
        if piece.startswith(p):
            piece = piece[len(p) :]
            break
    for s in suffixes:
        if piece.endswith(s):
            piece = piece[: -len(s)]
            break
    return piece


def fresh_backend(tokenizer_json: str):
    """A ``tokenizers.Tokenizer`` from JSON, without padding or truncation (every piece counts)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    backend.no_padding()
    backend.no_truncation()
    return backend


def encodings(backend, texts: Sequence[str]) -> Iterator:
    """Encodings (with special tokens) of ``texts``, in chunks, so a large corpus is never held twice."""
    for start in range(0, len(texts), CHUNK):
        yield from backend.encode_batch(list(texts[start : start + CHUNK]), add_special_tokens=True)
