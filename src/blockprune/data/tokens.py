"""Tokenise each split once, measure token lengths, and cache the result on disk.

Tokenising is the slow part of data loading; caching it keyed by everything that affects
the output (tokenizer, max_length, the exact texts) makes every later run start at once and
never reuse stale ids. Ids are stored flat (one int32 tensor plus offsets per split) so the
cache is small and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blockprune.atomic import atomic_path

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def cache_key(tokenizer: Any, max_length: int, texts: Mapping[str, Sequence[str]]) -> str:
    """sha256 of the tokenizer identity (path/id, class, vocab size), max_length and all texts."""
    h = hashlib.sha256()
    name = getattr(tokenizer, "name_or_path", "")
    ident = f"v{CACHE_VERSION}|{name}|{type(tokenizer).__name__}|{len(tokenizer)}|{max_length}"
    h.update(ident.encode())
    for split in sorted(texts):
        h.update(f"\x01{split}\x01".encode())
        for t in texts[split]:
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


#: Characters kept per allowed token before tokenising: a text is cut to ``max_length *
#: CHARS_PER_TOKEN`` characters first, so one huge text cannot cost gigabytes of token ids (a
#: 4.4M-character text cost 1.3 GB). No tokenizer piece is that long on average, so the first
#: ``max_length`` tokens are unchanged; "untruncated" lengths are then counted within the cut.
CHARS_PER_TOKEN = 32


def char_cap(max_length: int) -> int:
    return max(max_length, 1) * CHARS_PER_TOKEN


def encode_split(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token ids (truncated to ``max_length``, no padding) as flat tensors, plus untruncated lengths
    (counted within the first ``char_cap(max_length)`` characters)."""
    cap = char_cap(max_length)
    texts = [t if len(t) <= cap else t[:cap] for t in texts]
    if not texts:
        empty = torch.zeros(0, dtype=torch.int32)
        return {
            "input_ids": empty,
            "offsets": torch.zeros(1, dtype=torch.int64),
            "full_lengths": torch.zeros(0, dtype=torch.int64),
        }
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, verbose=False)
    ids: list[list[int]] = enc["input_ids"]
    lengths = [len(x) for x in ids]
    full = list(lengths)
    capped = [i for i, n in enumerate(lengths) if n >= max_length]
    if capped:  # only texts at the cap can have been truncated: measure their real length
        whole = tokenizer([texts[i] for i in capped], truncation=False, verbose=False)["input_ids"]
        for i, x in zip(capped, whole):
            full[i] = len(x)
    out = {
        "input_ids": torch.tensor([t for x in ids for t in x], dtype=torch.int32),
        "offsets": torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64),
        "full_lengths": torch.tensor(full, dtype=torch.int64),
    }
    if "token_type_ids" in enc:
        out["token_type_ids"] = torch.tensor([t for x in enc["token_type_ids"] for t in x], dtype=torch.int8)
    return out


def length_stats(full_lengths: torch.Tensor, max_length: int) -> dict[str, float]:
    """Token length statistics before truncation, and the fraction of texts truncated."""
    if full_lengths.numel() == 0:
        return {"count": 0}
    x = full_lengths.double().numpy()
    return {
        "count": int(x.size),
        "mean": round(float(x.mean()), 2),
        "p50": float(np.percentile(x, 50)),
        "p95": float(np.percentile(x, 95)),
        "max": int(x.max()),
        "truncated_fraction": round(float((x > max_length).mean()), 4),
    }


def load_or_encode(
    tokenizer: Any,
    texts: Mapping[str, Sequence[str]],
    max_length: int,
    cache_dir: str | os.PathLike | None,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Encoded splits and cache info ``{"path", "hit"}``; reads/writes ``cache_dir`` when given."""
    key = cache_key(tokenizer, max_length, texts)
    path = Path(cache_dir) / f"tokens-{key[:20]}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key and blob.get("version") == CACHE_VERSION:
                log.info("token cache hit: %s", path)
                return blob["splits"], {"path": str(path), "hit": True}
        except Exception as err:  # a corrupt cache is rebuilt, never trusted
            log.warning("ignoring unreadable token cache %s (%s)", path, err)
    encoded = {name: encode_split(tokenizer, list(t), max_length) for name, t in texts.items()}
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"version": CACHE_VERSION, "key": key, "splits": encoded}, tmp)
        log.info("token cache written: %s", path)
    return encoded, {"path": str(path) if path else None, "hit": False}
