"""Compaction: bake masks into weights, then physically remove empty heads and FFN neurons.

Masks alone make nothing faster; only a smaller dense model does. Removal is exact:
- a head whose attention-output columns are all zero contributes nothing;
- a head whose value rows are all zero outputs its value bias at every position (attention
  probabilities sum to one), a constant that is folded into the attention-output bias;
- a feed-forward neuron whose output column is zero contributes nothing, and one whose input
  row is zero outputs act(bias), again a constant folded into the output bias (gated FFNs,
  act(input) * gate: an empty part gives its bias; the neuron vanishes when that product is
  zero, and is a constant when both parts are empty);
- a constant is only removed where there is a bias to fold it into.
So the compacted model gives the masked model's logits (up to float rounding). Which rows and
columns belong to a head or neuron (fused QKV, gated FFN) is ``blockprune.encoder``'s business.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from blockprune.encoder import (
    LAYOUT_KEY,
    EncoderLayer,
    compacted_layout,
    find_encoder_layers,
)
from blockprune.pruning.masked_linear import BlockMaskedLinear


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


@torch.no_grad()
def _heads_to_keep(layer: EncoderLayer, linears: dict[str, nn.Linear]) -> list[int]:
    """Heads that still contribute; folds the value bias of removed heads into O's bias."""
    v, o = linears["qkv" if "qkv" in linears else "v"], linears["o"]
    v_rows, o_cols = layer.value_rows(v.weight), layer.output_cols(o.weight)
    v_dead = (v_rows == 0).flatten(1).all(1)
    o_dead = (o_cols == 0).flatten(1).all(1)
    v_bias = layer.value_rows(v.bias) if v.bias is not None else torch.zeros_like(v_rows[..., 0])
    constant = v_dead & ~o_dead & (v_bias != 0).any(1)  # outputs O_h @ bias_v,h at every position
    removable = o_dead | (v_dead & (~constant | (o.bias is not None)))  # a constant needs O's bias to fold into
    if removable.all():  # transformers needs at least one head; keep the one with most weight left
        alive_weights = (v_rows != 0).flatten(1).sum(1) + (o_cols != 0).flatten(1).sum(1)
        removable[int(alive_weights.argmax())] = False
    for h in (removable & constant).nonzero().flatten().tolist():
        o.bias += o_cols[h] @ v_bias[h]
    return [h for h in range(removable.numel()) if not removable[h]]


@torch.no_grad()
def _neurons_to_keep(layer: EncoderLayer, fin: nn.Linear, fout: nn.Linear) -> torch.Tensor:
    """FFN neurons that still depend on the input; folds constant ones into the output bias.

    A neuron whose input row is empty outputs act(bias) (gated: act(input) * gate, with an
    empty part giving its bias), a constant; it vanishes when that constant is zero.
    """
    parts_dead = (layer.ffn_rows(fin.weight) == 0).all(-1)  # (neurons, parts)
    bias = layer.ffn_rows(fin.bias) if fin.bias is not None else torch.zeros_like(parts_dead, dtype=fin.weight.dtype)
    out_dead = (fout.weight == 0).all(0)
    act_in = layer.act(bias[:, 0])
    if layer.gated:
        in_dead, gate_dead = parts_dead[:, 0], parts_dead[:, 1]
        zero = (in_dead & (act_in == 0)) | (gate_dead & (bias[:, 1] == 0))
        constant, value = in_dead & gate_dead & ~zero, act_in * bias[:, 1]
    else:
        zero = parts_dead[:, 0] & (act_in == 0)
        constant, value = parts_dead[:, 0] & ~zero, act_in
    fold = constant & ~out_dead if fout.bias is not None else torch.zeros_like(constant)
    if fold.any():
        fout.bias += fout.weight[:, fold] @ value[fold]
    return (~(out_dead | zero | fold)).nonzero().flatten()


def _compact_layer(layer: EncoderLayer, fill_heads: bool) -> tuple[list[int], int]:
    originals = {role: layer.linear(role) for role in layer.roles}
    linears = {role: _baked(m) for role, m in originals.items()}
    kept = _heads_to_keep(layer, linears)
    neurons = _neurons_to_keep(layer, linears["ffn_in"], linears["ffn_out"])
    if fill_heads:  # kept heads get their blocks back (nn_pruning's "filled"); fine-tune afterwards
        for role in layer.attention_roles:
            linears[role] = _unmasked(originals[role], linears[role])
    layer.keep(kept, neurons, linears)
    return kept, int(neurons.numel())


def compact_model(model: nn.Module, fill_heads: bool = False) -> CompactionReport:
    """Turn a (masked or dense) model into a smaller dense one, in place, and record its layout.

    The per-layer layout goes into ``model.config`` so that ``blockprune.load_model`` can
    rebuild the shapes; plain transformers cannot, since its config has one width for all layers.
    ``fill_heads`` keeps the kept heads' masked blocks (the model then differs from the masked
    one and needs a short fine-tune); without it the logits are unchanged.
    """
    layers = find_encoder_layers(model)
    heads_total = sum(layer.num_heads for layer in layers)
    ffn_total = sum(layer.ffn_size for layer in layers)
    kept = [_compact_layer(layer, fill_heads) for layer in layers]
    setattr(model.config, LAYOUT_KEY, compacted_layout(model))
    return CompactionReport([h for h, _ in kept], [n for _, n in kept], heads_total, ffn_total)
