"""Compaction: bake masks into weights, then physically remove empty heads and FFN neurons.

Masks alone make nothing faster; only a smaller dense model does. Removal is exact:
- a head whose attention-output columns are all zero contributes nothing;
- a head whose value rows are all zero outputs its value bias at every position (attention
  probabilities sum to one), a constant that is folded into the attention-output bias;
- a feed-forward neuron whose output column is zero contributes nothing, and one whose input
  row is zero outputs act(bias), again a constant folded into the output bias.
So the compacted model gives the masked model's logits (up to float rounding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from blockprune.models import LAYOUT_KEY
from blockprune.pruning.masked_linear import BlockMaskedLinear
from blockprune.pruning.patch import EncoderLayer, find_encoder_layers


@dataclass
class CompactionReport:
    heads_kept: list[list[int]]  # per layer, indices of the original heads kept
    ffn_kept: list[int]  # per layer, number of FFN neurons kept
    heads_total: int
    ffn_total: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["heads_left"] = sum(len(h) for h in self.heads_kept)
        d["ffn_neurons_left"] = sum(self.ffn_kept)
        return d


def _baked(linear: nn.Module) -> nn.Linear:
    return linear.to_linear() if isinstance(linear, BlockMaskedLinear) else linear


def _unmasked(linear: nn.Module, bias_from: nn.Linear) -> nn.Linear:
    """The layer's dense weight (mask ignored) with the given layer's (possibly folded) bias."""
    dense = nn.Linear(linear.in_features, linear.out_features, bias=bias_from.bias is not None)
    with torch.no_grad():
        dense.weight.copy_(linear.weight)
        if bias_from.bias is not None:
            dense.bias.copy_(bias_from.bias)
    return dense.to(linear.weight.device, linear.weight.dtype)


def _slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _compact_attention(layer: EncoderLayer, fill_heads: bool) -> list[int]:
    att = layer.attention
    originals = [getattr(att, n) for n in ("query", "key", "value")] + [layer.attention_output.dense]
    q, k, v, o = (_baked(m) for m in originals)
    dh, n_heads = layer.head_dim, layer.num_heads
    v_rows = v.weight.detach().view(n_heads, dh, -1)
    o_cols = o.weight.detach().view(o.out_features, n_heads, dh)
    v_dead = (v_rows == 0).flatten(1).all(1)
    o_dead = (o_cols == 0).permute(1, 0, 2).flatten(1).all(1)
    removable = v_dead | o_dead
    if removable.all():  # transformers needs at least one head; keep the one with most weight left
        alive_weights = (v_rows != 0).flatten(1).sum(1) + (o_cols != 0).permute(1, 0, 2).flatten(1).sum(1)
        removable[int(alive_weights.argmax())] = False
    kept = [h for h in range(n_heads) if not removable[h]]
    with torch.no_grad():
        for h in range(n_heads):
            if removable[h] and not o_dead[h] and v.bias is not None:
                o.bias += o.weight[:, h * dh : (h + 1) * dh] @ v.bias[h * dh : (h + 1) * dh]
    if fill_heads:  # kept heads get their blocks back (nn_pruning's "filled"); fine-tune afterwards
        q, k, v, o = (_unmasked(m, baked) for m, baked in zip(originals, (q, k, v, o)))
    idx = torch.tensor([h * dh + i for h in kept for i in range(dh)], dtype=torch.long, device=q.weight.device)
    att.query, att.key, att.value = (_slice_linear(m, rows=idx) for m in (q, k, v))
    layer.attention_output.dense = _slice_linear(o, cols=idx)
    att.num_attention_heads = len(kept)
    att.all_head_size = len(kept) * dh
    return kept


def _compact_ffn(layer: EncoderLayer) -> int:
    fin, fout = _baked(layer.intermediate.dense), _baked(layer.output.dense)
    in_dead = (fin.weight.detach() == 0).all(1)
    out_dead = (fout.weight.detach() == 0).all(0)
    act = layer.intermediate.intermediate_act_fn
    with torch.no_grad():
        fold = in_dead & ~out_dead
        if fold.any() and fin.bias is not None:
            fout.bias += fout.weight[:, fold] @ act(fin.bias[fold])
    keep = (~(in_dead | out_dead)).nonzero().flatten()
    layer.intermediate.dense = _slice_linear(fin, rows=keep)
    layer.output.dense = _slice_linear(fout, cols=keep)
    return int(keep.numel())


def compact_model(model: nn.Module, fill_heads: bool = False) -> CompactionReport:
    """Turn a (masked or dense) model into a smaller dense one, in place, and record its layout.

    The per-layer layout goes into ``model.config`` so that ``blockprune.load_model`` can
    rebuild the shapes; plain transformers cannot, since its config has one width for all layers.
    ``fill_heads`` keeps the kept heads' masked blocks (the model then differs from the masked
    one and needs a short fine-tune); without it the logits are unchanged.
    """
    layers = find_encoder_layers(model)
    heads_total = sum(layer.num_heads for layer in layers)
    ffn_total = sum(layer.intermediate.dense.out_features for layer in layers)
    heads_kept = [_compact_attention(layer, fill_heads) for layer in layers]
    ffn_kept = [_compact_ffn(layer) for layer in layers]
    setattr(
        model.config,
        LAYOUT_KEY,
        {"num_heads": [len(h) for h in heads_kept], "intermediate_sizes": ffn_kept, "head_dim": layers[0].head_dim},
    )
    return CompactionReport(heads_kept, ffn_kept, heads_total, ffn_total)


def resize_encoder(model: nn.Module, layout: dict) -> None:
    """Give a freshly built model the layer widths recorded by ``compact_model`` (weights come next)."""
    layers = find_encoder_layers(model)
    if len(layers) != len(layout["num_heads"]):
        raise ValueError(f"layout has {len(layout['num_heads'])} layers, the model {len(layers)}")
    dh = layout["head_dim"]
    for layer, heads, ffn in zip(layers, layout["num_heads"], layout["intermediate_sizes"]):
        att, hidden = layer.attention, layer.attention.query.in_features
        for name in ("query", "key", "value"):
            setattr(att, name, nn.Linear(hidden, heads * dh))
        layer.attention_output.dense = nn.Linear(heads * dh, hidden)
        att.num_attention_heads, att.all_head_size = heads, heads * dh
        layer.intermediate.dense = nn.Linear(hidden, ffn)
        layer.output.dense = nn.Linear(ffn, hidden)
