"""Parameter counts, per-layer layout and analytic FLOPs of encoder classifiers.

Everything is read from module SHAPES, never from ``model.config``: after compaction the
config still describes the dense model, while each layer has its own number of heads and
its own feed-forward width. Layers are found by ``blockprune.encoder`` (BERT-like, DeBERTa,
DistilBERT, ModernBERT, ...), which knows each family's fused or gated linears.
"""

from __future__ import annotations

from torch import nn

from blockprune.encoder import EncoderLayer, find_encoder_layers


def _macs(linear: nn.Module) -> int:
    """Multiply-adds per token: in x out for a linear, in/groups x out x kernel for a convolution."""
    return int(linear.weight.numel())


def _layer_macs(layer: EncoderLayer, roles: tuple[str, ...]) -> int:
    return sum(_macs(layer.linear(r)) for r in roles)


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
    encoder_layers = [layer.module for layer in find_encoder_layers(model)]
    word = getattr(embeddings, "word_embeddings", None) or getattr(embeddings, "tok_embeddings", None)  # ModernBERT
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

    Each entry: ``layer`` (index), ``heads`` (= attention width / head_dim), ``head_dim``,
    ``attention_width`` (heads * head_dim), ``ffn`` (feed-forward neurons, may be 0; a gated
    FFN's input linear has two rows per neuron), ``params`` (all parameters of the layer,
    LayerNorms included).
    """
    out = []
    for i, layer in enumerate(find_encoder_layers(model)):
        layer.check(i)
        out.append(
            {
                "layer": i,
                "heads": layer.num_heads,
                "head_dim": layer.head_dim,
                "attention_width": layer.attention_width,
                "ffn": layer.ffn_size,
                "params": _unique_params(layer.module),
            }
        )
    return out


def _outside_linears(model: nn.Module, layers: list[EncoderLayer]) -> tuple[int, int]:
    """MACs of linears (and convolutions) outside the encoder layers: (per token, per sequence).

    The pooler and everything outside the base model (the classifier) run once per sequence, on
    one token; other linears in the base model (ELECTRA's or DeBERTa's embedding projection,
    DeBERTa-v2's 1-D convolution after the first layer) per token.
    """
    base = _base_model(model)
    skip: set[int] = set()
    for layer in layers:
        skip.update(id(x) for x in layer.module.modules())
    pooler = getattr(base, "pooler", None)
    per_seq_ids: set[int] = set(id(x) for x in pooler.modules()) if pooler is not None else set()
    if base is not model:
        base_ids = {id(x) for x in base.modules()}
        per_seq_ids.update(id(x) for x in model.modules() if id(x) not in base_ids)
    per_token = per_seq = 0
    for m in model.modules():
        if id(m) in skip or not isinstance(m, (nn.Linear, nn.Conv1d)):
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
                                                  # (gated, ModernBERT: 2 * H * 2f_l + 2 * f_l * H)
        attn_position = t * (2 * r * a_l + 2 * r * H * a_l / n)  # DeBERTa only, else 0

    (DeBERTa's disentangled attention: ``t`` of c2p/p2c terms, each scoring every query against
    ``r = 2 * span`` relative positions, and projecting the ``r`` relative embeddings once per
    sequence), plus, once per sequence and therefore divided by ``n``, the pooler and classifier::

        head = 2 * (H*H + H*C) / n                # BERT: pooler dense + classifier (C labels)

    (generally: 2 * sum(in*out) over the linears outside the base model plus the pooler), and,
    per token, any other linear or 1-D convolution of the base model outside the layers (ELECTRA's
    or DeBERTa's embedding projection, DeBERTa-v2's convolution; usually absent) as
    ``embedding_projection``.

    Not counted (small or not multiply-adds): biases, LayerNorm, softmax, GELU/tanh, rotary
    embeddings, residual adds, scaling, embedding look-ups. All ``n`` positions are attended (no
    padding; ModernBERT's local layers are counted as eager/SDPA compute them, over all ``n``).

    Returns ``{"seq_len", "hidden_size", "total", "breakdown": {qkv, attn_out, attn_scores,
    attn_context, attn_position, ffn, head, embedding_projection}, "per_layer": [{layer, heads,
    ffn, qkv, attn_out, attn_scores, attn_context, attn_position, ffn_flops, total}]}``.
    """
    if int(seq_len) < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = int(seq_len)
    layers = find_encoder_layers(model)
    keys = ("qkv", "attn_out", "attn_scores", "attn_context", "attn_position", "ffn")
    breakdown = dict.fromkeys(keys, 0.0)
    per_layer = []
    for i, layer in enumerate(layers):
        layer.check(i)
        a, hidden = layer.attention_width, layer.hidden_size
        terms, positions = layer.relative_position_terms()
        values = (
            2.0 * _layer_macs(layer, tuple(r for r in layer.attention_roles if r != "o")),
            2.0 * _macs(layer.linear("o")),
            2.0 * n * a,
            2.0 * n * a,
            terms * (2.0 * positions * a + 2.0 * positions * hidden * a / n),
            2.0 * _layer_macs(layer, ("ffn_in", "ffn_out")),
        )
        for key, value in zip(keys, values):
            breakdown[key] += value
        row = dict(zip(keys, values))
        row["ffn_flops"] = row.pop("ffn")
        per_layer.append({"layer": i, "heads": layer.num_heads, "ffn": layer.ffn_size, **row, "total": sum(values)})
    per_token_other, per_seq = _outside_linears(model, layers)
    breakdown["head"] = 2.0 * per_seq / n
    breakdown["embedding_projection"] = 2.0 * per_token_other
    return {
        "seq_len": n,
        "hidden_size": layers[0].hidden_size,
        "total": sum(breakdown.values()),
        "breakdown": breakdown,
        "per_layer": per_layer,
    }
