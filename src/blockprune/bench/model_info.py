"""What each benchmarked model is: parameters, per-layer shape and FLOPs per token (the analytic side).

A measured speed-up is reported next to the analytic one (ratio of FLOPs per token), so an entry
that is not a PyTorch model (an onnxruntime session) points to the PyTorch model it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from blockprune.bench.runners import backend_of
from blockprune.errors import BlockpruneError
from blockprune.flops import count_parameters, encoder_layout, flops_per_token
from blockprune.models import model_max_length


def analytic_model(model: nn.Module) -> nn.Module | None:
    """The PyTorch model whose shapes give FLOPs/params (another runtime's entry points to its source)."""
    return model if backend_of(model) == "pytorch" else getattr(model, "flops_model", None)


def vocab_size(model: nn.Module) -> int | None:
    src = analytic_model(model)
    if src is None:
        return getattr(model, "vocab_size", None)
    get = getattr(src, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    return int(emb.num_embeddings) if emb is not None else getattr(getattr(src, "config", None), "vocab_size", None)


def max_positions(model: nn.Module) -> int | None:
    src = analytic_model(model)
    config = getattr(src, "config", None)
    if config is None or getattr(config, "max_position_embeddings", None) is None:
        return None
    return model_max_length(src)


def model_info(models: Mapping[str, nn.Module], seq_lens: list[int]) -> dict[str, Any]:
    """Per model: backend, class, parameters, heads and FFN width per layer, FLOPs/token per seq_len."""
    info: dict[str, Any] = {}
    for name, model in models.items():
        src = analytic_model(model)
        entry: dict[str, Any] = {
            "backend": backend_of(model),
            "class": type(src if src is not None else model).__name__,
        }
        try:
            if src is None:
                raise BlockpruneError("no PyTorch model to read shapes from")
            layout = encoder_layout(src)
            entry["parameters"] = count_parameters(src)
            entry["heads_per_layer"] = [x["heads"] for x in layout]
            entry["ffn_per_layer"] = [x["ffn"] for x in layout]
            entry["head_dim"] = layout[0]["head_dim"] if layout else None
            entry["flops_per_token"] = {str(n): flops_per_token(src, n)["total"] for n in seq_lens}
        except BlockpruneError as err:
            entry["parameters"] = {"total": sum(p.numel() for p in model.parameters())}
            entry["flops_per_token"] = None
            entry["note"] = f"no analytic FLOPs: {err}"
        info[name] = entry
    return info


def flops_at(info: Mapping[str, Any], name: str, seq: int) -> float | None:
    table = info[name].get("flops_per_token")
    return table.get(str(seq)) if table else None
