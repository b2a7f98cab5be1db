"""Parameter counts, per-layer layout and analytic FLOPs of BERT-family classifiers.

Everything is read from module SHAPES, never from ``model.config``: after compaction the
config still describes the dense model, while each layer has its own number of heads and
its own feed-forward width.

A "BERT-shaped" layer is any module with ``attention.self.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense`` and ``output.dense`` linears (BERT,
RoBERTa, XLM-R, ELECTRA, MuRIL, e5, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from blockprune.errors import BlockpruneError


@dataclass
class _Layer:
    query: nn.Module
    key: nn.Module
    value: nn.Module
    attn_out: nn.Module
    ffn_in: nn.Module
    ffn_out: nn.Module
    head_dim: int
    module: nn.Module


def _features(linear: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a linear, from its weight shape."""
    out_f, in_f = linear.weight.shape
    return int(in_f), int(out_f)


def _macs(linear: nn.Module) -> int:
    in_f, out_f = _features(linear)
    return in_f * out_f


def _is_linear_like(module: object) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Module) and weight is not None and getattr(weight, "ndim", 0) == 2


def _head_dim(self_attn: nn.Module, width: int) -> int:
    # ``attention_head_size`` is what BERT's forward reshapes with ((..., -1, head_size)), so it is
    # the truth even when the config is stale; it never changes when whole heads are removed.
    for name in ("attention_head_size", "head_dim", "head_size"):
        value = getattr(self_attn, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise BlockpruneError(
        f"Cannot tell the head size of {type(self_attn).__name__} (attention width {width}): it has no "
        "'attention_head_size' attribute. blockprune supports BERT-family encoders."
    )


def _find_layers(model: nn.Module) -> list[_Layer]:
    layers = []
    for module in model.modules():
        attention = getattr(module, "attention", None)
        self_attn = getattr(attention, "self", None)
        attn_out = getattr(getattr(attention, "output", None), "dense", None)
        ffn_in = getattr(getattr(module, "intermediate", None), "dense", None)
        ffn_out = getattr(getattr(module, "output", None), "dense", None)
        qkv = [getattr(self_attn, n, None) for n in ("query", "key", "value")]
        if self_attn is None or not all(_is_linear_like(m) for m in (*qkv, attn_out, ffn_in, ffn_out)):
            continue
        width = _features(qkv[0])[1]
        layers.append(_Layer(*qkv, attn_out, ffn_in, ffn_out, _head_dim(self_attn, width), module))
    if not layers:
        raise BlockpruneError(
            f"{type(model).__name__} has no BERT-shaped encoder layers (attention.self.query/key/value, "
            "attention.output.dense, intermediate.dense, output.dense); blockprune supports BERT-family encoders."
        )
    return layers


def _base_model(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) else model


def _unique_params(module: nn.Module | None, seen: set[int] | None = None) -> int:
    if module is None:
        return 0
    total = 0
    for p in module.parameters():
        if seen is not None:
            if id(p) in seen:
                continue
            seen.add(id(p))
        total += p.numel()
    return total


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts by part.

    Keys: ``total`` (== ``sum(p.numel() for p in model.parameters())``), ``embeddings`` (the
    embedding block: word, position, token-type embeddings and their LayerNorm),
    ``word_embeddings`` (the vocabulary matrix alone, included in ``embeddings``), ``encoder``
    (all transformer layers), ``head`` (pooler + classifier, i.e. everything outside the base
    model plus the pooler) and ``other`` (anything left, e.g. ELECTRA's embedding projection;
    usually 0). ``embeddings + encoder + head + other == total``.
    """
    base = _base_model(model)
    seen: set[int] = set()
    embeddings = getattr(base, "embeddings", None)
    encoder_layers = [layer.module for layer in _find_layers(model)]
    word = getattr(embeddings, "word_embeddings", None)
    total = _unique_params(model)
    word_n = _unique_params(word)
    emb_n = _unique_params(embeddings, seen)
    enc_n = sum(_unique_params(m, seen) for m in encoder_layers)
    head_n = _unique_params(getattr(base, "pooler", None), seen)
    if base is not model:
        base_ids = {id(p) for p in base.parameters()}
        head_n += sum(p.numel() for p in model.parameters() if id(p) not in base_ids and id(p) not in seen)
        seen.update(id(p) for p in model.parameters() if id(p) not in base_ids)
    other = total - emb_n - enc_n - head_n
    return {
        "total": total,
        "embeddings": emb_n,
        "word_embeddings": word_n,
        "encoder": enc_n,
        "head": head_n,
        "other": other,
    }


def encoder_layout(model: nn.Module) -> list[dict[str, int]]:
    """Per encoder layer, read from the linear layers' shapes (not from the config).

    Each entry: ``layer`` (index), ``heads`` (= query out_features / head_dim), ``head_dim``,
    ``attention_width`` (heads * head_dim), ``ffn`` (intermediate.dense out_features, may be 0),
    ``params`` (all parameters of the layer, LayerNorms included).
    """
    out = []
    for i, layer in enumerate(_find_layers(model)):
        widths = {
            "query": _features(layer.query)[1],
            "key": _features(layer.key)[1],
            "value": _features(layer.value)[1],
            "attention.output": _features(layer.attn_out)[0],
        }
        width = widths["query"]
        if len(set(widths.values())) != 1 or width % layer.head_dim:
            raise BlockpruneError(
                f"Encoder layer {i} is inconsistent: attention widths {widths} must be equal and a multiple "
                f"of the head size {layer.head_dim}. The model was compacted incorrectly."
            )
        ffn = _features(layer.ffn_in)[1]
        if _features(layer.ffn_out)[0] != ffn:
            raise BlockpruneError(
                f"Encoder layer {i} is inconsistent: intermediate.dense has {ffn} outputs but output.dense "
                f"takes {_features(layer.ffn_out)[0]} inputs."
            )
        out.append(
            {
                "layer": i,
                "heads": width // layer.head_dim,
                "head_dim": layer.head_dim,
                "attention_width": width,
                "ffn": ffn,
                "params": _unique_params(layer.module),
            }
        )
    return out


def _hidden_size(model: nn.Module, layers: list[_Layer]) -> int:
    return _features(layers[0].query)[0]


def _outside_linears(model: nn.Module, layers: list[_Layer]) -> tuple[int, int]:
    """MACs of linears outside the encoder layers and embeddings: (per token, per sequence).

    The pooler and everything outside the base model (the classifier) run once per sequence, on
    one token; other linears in the base model (e.g. ELECTRA's embedding projection) per token.
    """
    base = _base_model(model)
    skip: set[int] = set()
    for m in [layer.module for layer in layers] + [getattr(base, "embeddings", None)]:
        if m is not None:
            skip.update(id(x) for x in m.modules())
    pooler = getattr(base, "pooler", None)
    per_seq_ids: set[int] = set(id(x) for x in pooler.modules()) if pooler is not None else set()
    if base is not model:
        base_ids = {id(x) for x in base.modules()}
        per_seq_ids.update(id(x) for x in model.modules() if id(x) not in base_ids)
    per_token = per_seq = 0
    for m in model.modules():
        if id(m) in skip or not isinstance(m, nn.Linear):
            continue
        if id(m) in per_seq_ids:
            per_seq += _macs(m)
        else:
            per_token += _macs(m)
    return per_token, per_seq


def flops_per_token(model: nn.Module, seq_len: int) -> dict:
    """Analytic forward FLOPs per token (2 FLOPs per multiply-add), from module shapes.

    For encoder layer ``l`` with ``h_l`` heads of size ``d`` (attention width ``a_l = h_l*d``),
    hidden size ``H``, feed-forward width ``f_l`` and sequence length ``n``, per token::

        qkv          = 2 * 3 * H * a_l            # Q, K, V projections
        attn_out     = 2 * a_l * H                # output projection O
        attn_scores  = 2 * h_l * n * d = 2*n*a_l  # Q K^T: each query against n keys
        attn_context = 2 * n * a_l                # softmax(QK^T) V
        ffn          = 2 * H * f_l + 2 * f_l * H  # intermediate + output linears

    plus, once per sequence and therefore divided by ``n``, the pooler and classifier::

        head = 2 * (H*H + H*C) / n                # BERT: pooler dense + classifier (C labels)

    (generally: 2 * sum(in*out) over the linears outside the base model plus the pooler), and,
    per token, any other linear of the base model outside the layers (e.g. ELECTRA's embedding
    projection, usually absent) as ``embedding_projection``.

    Not counted (small or not multiply-adds): biases, LayerNorm, softmax, GELU/tanh, residual
    adds, scaling, embedding look-ups. All ``n`` positions are attended (no padding).

    Returns ``{"seq_len", "total", "breakdown": {qkv, attn_out, attn_scores, attn_context, ffn,
    head, embedding_projection}, "per_layer": [{layer, heads, ffn, qkv, attn_out, attn_scores,
    attn_context, ffn_flops, total}]}``.
    """
    if int(seq_len) < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = int(seq_len)
    layers = _find_layers(model)
    hidden = _hidden_size(model, layers)
    breakdown = dict.fromkeys(("qkv", "attn_out", "attn_scores", "attn_context", "ffn"), 0.0)
    per_layer = []
    for i, layer in enumerate(layers):
        qkv = 2.0 * (_macs(layer.query) + _macs(layer.key) + _macs(layer.value))
        attn_out = 2.0 * _macs(layer.attn_out)
        width = _features(layer.query)[1]
        scores = 2.0 * n * width
        context = 2.0 * n * _features(layer.value)[1]
        ffn = 2.0 * (_macs(layer.ffn_in) + _macs(layer.ffn_out))
        for key, value in zip(breakdown, (qkv, attn_out, scores, context, ffn)):
            breakdown[key] += value
        per_layer.append(
            {
                "layer": i,
                "heads": width // layer.head_dim,
                "ffn": _features(layer.ffn_in)[1],
                "qkv": qkv,
                "attn_out": attn_out,
                "attn_scores": scores,
                "attn_context": context,
                "ffn_flops": ffn,
                "total": qkv + attn_out + scores + context + ffn,
            }
        )
    per_token_other, per_seq = _outside_linears(model, layers)
    breakdown["head"] = 2.0 * per_seq / n
    breakdown["embedding_projection"] = 2.0 * per_token_other
    return {
        "seq_len": n,
        "hidden_size": hidden,
        "total": sum(breakdown.values()),
        "breakdown": breakdown,
        "per_layer": per_layer,
    }
