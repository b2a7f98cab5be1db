"""Finding the prunable linear layers of a BERT-family encoder by structure, and masking them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from blockprune.pruning.masked_linear import BlockMaskedLinear


@dataclass
class EncoderLayer:
    """The parts of one transformer layer that pruning and compaction touch."""

    attention: nn.Module  # has .query/.key/.value
    attention_output: nn.Module  # has .dense (columns = heads)
    intermediate: nn.Module  # has .dense (rows = FFN neurons)
    output: nn.Module  # has .dense (columns = FFN neurons)

    @property
    def head_dim(self) -> int:
        return self.attention.attention_head_size

    @property
    def num_heads(self) -> int:
        return self.attention.query.out_features // self.head_dim


def _is_linear(module: object) -> bool:
    return isinstance(module, nn.Linear)


def find_encoder_layers(model: nn.Module) -> list[EncoderLayer]:
    """Every transformer layer shaped like BERT's (BERT, MuRIL, RoBERTa, XLM-R, e5, ...).

    A layer is recognised by its structure, not by names: an attention block with
    query/key/value linears and an output projection, then an intermediate and output linear.
    """
    layers = []
    for module in model.modules():
        attention = getattr(module, "attention", None)
        self_attn = getattr(attention, "self", None)
        attn_out = getattr(attention, "output", None)
        intermediate = getattr(module, "intermediate", None)
        output = getattr(module, "output", None)
        if (
            self_attn is not None
            and all(_is_linear(getattr(self_attn, n, None)) for n in ("query", "key", "value"))
            and _is_linear(getattr(attn_out, "dense", None))
            and _is_linear(getattr(intermediate, "dense", None))
            and _is_linear(getattr(output, "dense", None))
        ):
            layers.append(EncoderLayer(self_attn, attn_out, intermediate, output))
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no BERT-shaped encoder layers (attention.self.query/key/value, "
            "attention.output.dense, intermediate.dense, output.dense); block pruning supports BERT-family encoders."
        )
    return layers


def masked_layers(model: nn.Module) -> list[BlockMaskedLinear]:
    return [m for m in model.modules() if isinstance(m, BlockMaskedLinear)]


def check_block_shape(model: nn.Module, block_shape: tuple[int, int]) -> None:
    """Fail before training when the attention block shape does not tile every attention matrix."""
    rows, cols = block_shape
    for i, layer in enumerate(find_encoder_layers(model)):
        for name, lin in (("query", layer.attention.query), ("attention output", layer.attention_output.dense)):
            out_f, in_f = lin.weight.shape
            if out_f % rows or in_f % cols:
                raise ValueError(
                    f"prune.attention_block={list(block_shape)} does not divide layer {i}'s {name} weight "
                    f"({out_f}x{in_f}); choose sizes that divide {out_f} and {in_f} (e.g. the head size "
                    f"{layer.head_dim})."
                )


def patch_encoder(
    model: nn.Module, block_shape: tuple[int, int] | None, binarizer_factory
) -> list[BlockMaskedLinear]:
    """Replace the encoder's attention and feed-forward linears with ``BlockMaskedLinear``.

    Attention Q/K/V/O get one score per block, or with ``block_shape=None`` one score per
    head shared by all four (structured head pruning: every removed head is a speed-up). The
    feed-forward pair gets one score per intermediate neuron, shared between the rows of the
    first linear and the columns of the second so that a neuron is kept or removed as a whole.
    Embeddings, pooler and classifier stay dense. Idempotent.
    """
    if masked_layers(model):
        return masked_layers(model)
    if block_shape is not None:
        check_block_shape(model, block_shape)
    for layer in find_encoder_layers(model):
        att, out = layer.attention, layer.attention_output
        if block_shape is None:
            hidden, dh = att.query.in_features, layer.head_dim
            q = BlockMaskedLinear(att.query, (dh, hidden), binarizer_factory())
            shared = q.mask_scores
            att.query = q
            att.key = BlockMaskedLinear(att.key, (dh, hidden), binarizer_factory(), mask_scores=shared)
            att.value = BlockMaskedLinear(att.value, (dh, hidden), binarizer_factory(), mask_scores=shared)
            out.dense = BlockMaskedLinear(out.dense, (out.dense.out_features, dh), binarizer_factory(), mask_scores=shared)
        else:
            for name in ("query", "key", "value"):
                setattr(att, name, BlockMaskedLinear(getattr(att, name), block_shape, binarizer_factory()))
            out.dense = BlockMaskedLinear(out.dense, block_shape, binarizer_factory())
        ffn_in = BlockMaskedLinear(layer.intermediate.dense, (1, layer.intermediate.dense.in_features), binarizer_factory())
        hidden = layer.output.dense.out_features
        ffn_out = BlockMaskedLinear(layer.output.dense, (hidden, 1), binarizer_factory(), mask_scores=ffn_in.mask_scores)
        layer.intermediate.dense, layer.output.dense = ffn_in, ffn_out
    return masked_layers(model)
