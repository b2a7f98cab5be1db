"""Saved classifier folders for the deploy / predict tests: a tiny BERT with the real e5-small-mr
tokenizer, compacted by the pruning API (random head and neuron scores at 50 %)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from blockprune.models import build_tiny_classifier, load_tokenizer
from blockprune.pruning import TopKBinarizer, compact_model, patch_encoder
from blockprune.pruning.patch import masked_layers
from helpers.paths import E5_DIR

LABELS = ["auto", "sports", "tech"]


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
