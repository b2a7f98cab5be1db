"""Saved classifier folders for the deploy / predict tests: a tiny BERT with the real e5-small-mr
tokenizer, compacted by the pruning API (random head and neuron scores at 50 %)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from blockprune.deploy import export_runtime
from blockprune.models import build_tiny_classifier, load_tokenizer
from blockprune.pruning import TopKBinarizer, compact_model, patch_encoder
from blockprune.pruning.patch import masked_layers
from helpers.paths import E5_DIR

LABELS = ["auto", "sports", "tech"]
#: int8 / bfloat16 on the fixed texts: at least this share of predictions equal to float32's ...
MIN_AGREEMENT = 0.9
#: ... and logits within this (the tiny model's logits are about 0.1 in size).
MAX_REDUCED_DIFF = 0.02


def tiny_classifier(seed: int = 0):
    labels = dict(enumerate(LABELS))
    return build_tiny_classifier(str(E5_DIR), len(LABELS), labels, {v: k for k, v in labels.items()}, seed=seed).eval()


def compacted(model, sparsity: float = 0.5, seed: int = 0):
    """A compacted copy: whole heads and FFN neurons removed by random scores (top-k)."""
    model = copy.deepcopy(model)
    patch_encoder(model, None, TopKBinarizer)
    gen = torch.Generator().manual_seed(seed)
    for layer in masked_layers(model):
        with torch.no_grad():
            layer.mask_scores.copy_(torch.randn(layer.mask_scores.shape, generator=gen))
        layer.set_sparsity(sparsity)
    compact_model(model)
    return model.eval()


def save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    load_tokenizer(str(E5_DIR)).save_pretrained(folder)
    return folder


def exported(folder: Path, runtimes: list[str]) -> tuple:
    """A compacted tiny classifier saved in ``folder`` with each runtime exported beside it:
    (folder, model, the exported files)."""
    model = compacted(tiny_classifier())
    save(model, folder)
    tokenizer = load_tokenizer(str(folder))
    return folder, model, [export_runtime(model, tokenizer, folder, name) for name in runtimes]


def reduced_precision_agreement(got, ref) -> tuple[float, float]:
    """Share of equal predictions and max |logit difference| of a reduced-precision runtime against
    float32, asserted within MIN_AGREEMENT / MAX_REDUCED_DIFF and > 0 (it really ran reduced)."""
    agreement = float((got.argmax(-1) == ref.argmax(-1)).mean())
    diff = float(abs(got - ref).max())
    assert 0 < diff <= MAX_REDUCED_DIFF, diff
    assert agreement >= MIN_AGREEMENT, agreement
    return agreement, diff
