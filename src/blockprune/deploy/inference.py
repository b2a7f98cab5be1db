"""Texts -> logits through any runtime, batched by length (padding costs time on every runtime).

Texts are tokenised once, sorted by token count, cut into batches of similar length, padded
per batch, and the logits put back in input order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blockprune.deploy.runtimes import Runtime

#: Position limit when neither the tokenizer nor the config names one.
_FALLBACK_MAX_LENGTH = 512


def max_length_of(model_dir: str | Path | None, tokenizer: Any) -> int:
    """The longest input to feed: the tokenizer's limit, capped by the model's position embeddings."""
    limit = getattr(tokenizer, "model_max_length", None) or _FALLBACK_MAX_LENGTH
    config = Path(model_dir) / "config.json" if model_dir else None
    if config is not None and config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        positions = cfg.get("max_position_embeddings")
        if positions:
            roberta = cfg.get("model_type") in ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")
            limit = min(limit, int(positions) - ((cfg.get("pad_token_id") or 0) + 1 if roberta else 0))
    return int(min(limit, 1 << 16))


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices in batches of ``batch_size``, shortest texts first (stable: ties keep input order)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def predict_logits(
    runtime: Runtime,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """Logits (len(texts), labels) in input order; ``progress`` shows a tqdm bar (to stderr)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    lengths = [len(x) for x in enc["input_ids"]]
    out: np.ndarray | None = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), unit="text", desc=f"predict ({runtime.name})")
    try:
        for idx in length_batches(lengths, batch_size):
            features = [{k: enc[k][i] for k in keys} for i in idx]
            batch = tokenizer.pad(features, padding=True, return_tensors="np")
            logits = runtime.logits({k: batch[k] for k in keys})
            if out is None:
                out = np.zeros((len(texts), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
