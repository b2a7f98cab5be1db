"""Tiny random BERT classifiers and a by-hand compaction (slicing linears) for the tests.

Not a test module (no ``test_`` prefix); imported by test_flops / test_benchmark / test_export.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

VOCAB, HIDDEN, HEADS, HEAD_DIM, FFN, LABELS, MAX_POS = 100, 64, 4, 16, 128, 3, 64


def make_tiny(num_layers: int = 3, seed: int = 0, attn: str = "sdpa") -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        num_hidden_layers=num_layers,
        intermediate_size=FFN,
        max_position_embeddings=MAX_POS,
        num_labels=LABELS,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).eval()


def _slice(linear: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, idx)
    bias = linear.bias.detach()
    if dim == 0:
        bias = bias.index_select(0, idx)
    with warnings.catch_warnings():  # zero-width linears warn that init is a no-op
        warnings.simplefilter("ignore", UserWarning)
        new = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def compact_layer(model: BertForSequenceClassification, layer: int, keep_heads, keep_neurons) -> None:
    """Physically remove heads / FFN neurons of one layer by slicing its linears, in place.

    Deliberately leaves ``num_attention_heads`` / ``all_head_size`` stale: transformers 5 BERT
    infers the head count from the projection width at run time.
    """
    blk = model.bert.encoder.layer[layer]
    att = blk.attention.self
    cols = torch.tensor([h * HEAD_DIM + i for h in keep_heads for i in range(HEAD_DIM)], dtype=torch.long)
    for name in ("query", "key", "value"):
        setattr(att, name, _slice(getattr(att, name), cols, 0))
    blk.attention.output.dense = _slice(blk.attention.output.dense, cols, 1)
    neurons = torch.tensor(list(keep_neurons), dtype=torch.long)
    blk.intermediate.dense = _slice(blk.intermediate.dense, neurons, 0)
    blk.output.dense = _slice(blk.output.dense, neurons, 1)


def make_compacted(seed: int = 0, attn: str = "sdpa") -> BertForSequenceClassification:
    """3 layers: (2 heads, 50 neurons), (1 head, 0 neurons), (4 heads, 128 neurons)."""
    model = make_tiny(3, seed=seed, attn=attn)
    compact_layer(model, 0, [0, 2], range(50))
    compact_layer(model, 1, [3], [])
    return model
