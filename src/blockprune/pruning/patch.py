"""Masking the prunable linears of an encoder (found through ``blockprune.encoder``)."""

from __future__ import annotations

from torch import nn

from blockprune.encoder import EncoderLayer, find_encoder_layers
from blockprune.pruning.masked_linear import BlockMaskedLinear

__all__ = ["EncoderLayer", "check_block_shape", "find_encoder_layers", "masked_layers", "patch_encoder"]


def masked_layers(model: nn.Module) -> list[BlockMaskedLinear]:
    return [m for m in model.modules() if isinstance(m, BlockMaskedLinear)]


def check_block_shape(model: nn.Module, block_shape: tuple[int, int]) -> None:
    """Fail before training when the attention block shape does not tile every attention matrix.

    For a fused QKV weight each of Q, K and V must be tiled on its own, so a block never
    straddles two of them.
    """
    rows, cols = block_shape
    for i, layer in enumerate(find_encoder_layers(model)):
        a, hidden = layer.attention_width, layer.hidden_size
        for name, (out_f, in_f) in (("query", (a, hidden)), ("attention output", (hidden, a))):
            if out_f % rows or in_f % cols:
                raise ValueError(
                    f"prune.attention_block={list(block_shape)} does not divide layer {i}'s {name} weight "
                    f"({out_f}x{in_f}); choose sizes that divide {out_f} and {in_f} (e.g. the head size "
                    f"{layer.head_dim})."
                )


def _patch_heads(layer: EncoderLayer, binarizer_factory) -> None:
    """One score per head, shared by its Q/K/V rows and O columns (fused QKV: tiled over the three)."""
    hidden, dh = layer.hidden_size, layer.head_dim
    shared = None
    for role in layer.attention_roles:
        if role == "o":
            masked = BlockMaskedLinear(layer.linear(role), (hidden, dh), binarizer_factory(), shared)
        else:
            tile = 3 if role == "qkv" else 1
            masked = BlockMaskedLinear(layer.linear(role), (dh, hidden), binarizer_factory(), shared, tile_rows=tile)
        shared = masked.mask_scores
        layer.set_linear(role, masked)


def _patch_ffn(layer: EncoderLayer, binarizer_factory) -> None:
    """One score per neuron, shared by its input row(s) (gated: input and gate) and its output column."""
    fin, fout = layer.linear("ffn_in"), layer.linear("ffn_out")
    tile = 2 if layer.gated else 1
    ffn_in = BlockMaskedLinear(fin, (1, fin.weight.shape[1]), binarizer_factory(), tile_rows=tile)
    ffn_out = BlockMaskedLinear(fout, (fout.weight.shape[0], 1), binarizer_factory(), ffn_in.mask_scores)
    layer.set_linear("ffn_in", ffn_in)
    layer.set_linear("ffn_out", ffn_out)


def patch_encoder(model: nn.Module, block_shape: tuple[int, int] | None, binarizer_factory) -> list[BlockMaskedLinear]:
    """Replace the encoder's attention and feed-forward linears with ``BlockMaskedLinear``.

    Attention Q/K/V/O get one score per block, or with ``block_shape=None`` one score per
    head shared by all four (structured head pruning: every removed head is a speed-up). The
    feed-forward pair gets one score per intermediate neuron, shared between the rows of the
    first linear and the columns of the second so that a neuron is kept or removed as a whole.
    Embeddings, pooler and classifier stay dense. Idempotent.

    A fused QKV weight (ModernBERT) is one matrix: in block mode top-k ranks its blocks
    together; in head mode its Q, K and V rows of a head share the head's score. A gated FFN's
    input and gate rows of a neuron share the neuron's score.
    """
    if masked_layers(model):
        return masked_layers(model)
    if block_shape is not None:
        check_block_shape(model, block_shape)
    for layer in find_encoder_layers(model):
        if block_shape is None:
            _patch_heads(layer, binarizer_factory)
        else:
            for role in layer.attention_roles:
                layer.set_linear(role, BlockMaskedLinear(layer.linear(role), block_shape, binarizer_factory()))
        _patch_ffn(layer, binarizer_factory)
    return masked_layers(model)
