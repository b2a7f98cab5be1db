"""Stage 5: slice the model's embedding rows to the kept ids, and check its outputs did not move.

The kept rows are copied unchanged in their original order, so the trimmed model must give the
same outputs on the corpus as before; ties (an MLM head sharing the word embeddings) survive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from blockprune.errors import BlockpruneError
from blockprune.vocab.vocabulary import CONFIG_ID_KEYS


def embedding_rows(model: nn.Module, vocab_size: int) -> int:
    """The model's word-embedding rows; fewer than the tokenizer's ids means a foreign tokenizer."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < vocab_size:
        raise BlockpruneError(
            f"the model has {rows} word-embedding rows but the tokenizer has "
            f"{vocab_size} ids; the tokenizer does not belong to this model"
        )
    return rows


def unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    return model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None


def embedding_params(model: nn.Module) -> int:
    """Parameters of the input and output embeddings, a tied weight counted once."""
    seen, total = set(), 0
    mods = [model.get_input_embeddings()]
    out = _output_embeddings(model)
    if out is not None:
        mods.append(out)
    for m in mods:
        for p in (getattr(m, "weight", None), getattr(m, "bias", None)):
            if p is not None and p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel()
    return total


def check_position_padding(model: nn.Module, new_id: Mapping[int, int]) -> None:
    """RoBERTa-style models also use the pad id as the offset of position ids; it must not move."""
    pad = getattr(model.config, "pad_token_id", None)
    if not isinstance(pad, int) or new_id.get(pad, pad) == pad:
        return
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding) and getattr(module, "padding_idx", None) == pad:
            raise BlockpruneError(
                f"{name}.padding_idx is the pad token id {pad}, which this model also uses to number "
                f"positions, but trimming would move the pad token to id {new_id[pad]}; keep every id "
                f"below {pad} with extra_tokens, or do not trim this model's vocabulary"
            )


def slice_embeddings(model: nn.Module, keep: list[int], new_id: Mapping[int, int]) -> str:
    """Keep rows ``keep`` (old ids, in order) of the input and output embeddings. Returns the tie state."""
    emb = model.get_input_embeddings()
    old_w = emb.weight
    old_rows = old_w.shape[0]
    idx = torch.tensor(keep, dtype=torch.long, device=old_w.device)
    out = _output_embeddings(model)
    out_w = getattr(out, "weight", None) if out is not None else None
    tied = out_w is not None and out_w.data_ptr() == old_w.data_ptr()

    def sliced(p: nn.Parameter) -> nn.Parameter:
        return nn.Parameter(p.detach().index_select(0, idx).clone(), requires_grad=p.requires_grad)

    # (data_ptr, shape) of an old parameter -> its replacement; every module that holds a parameter
    # sharing that storage (ties: decoder.weight / word_embeddings.weight, decoder.bias / bias)
    # gets the same new parameter, so ties survive.
    replace: dict[tuple[int, tuple], nn.Parameter] = {}
    new_w = sliced(old_w)
    replace[(old_w.data_ptr(), tuple(old_w.shape))] = new_w
    state = "none"
    if out is not None and out_w is not None:
        if tied:
            state = "tied"
        elif out_w.shape[0] == old_rows:
            replace[(out_w.data_ptr(), tuple(out_w.shape))] = sliced(out_w)
            state = "untied"
        out_b = getattr(out, "bias", None)
        if out_b is not None and out_b.dim() == 1 and out_b.shape[0] == old_rows:
            replace[(out_b.data_ptr(), tuple(out_b.shape))] = sliced(out_b)

    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            new = replace.get((p.data_ptr(), tuple(p.shape)))
            if new is not None:
                module._parameters[name] = new

    n = len(keep)
    emb.num_embeddings = n
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_id.get(emb.padding_idx)
    if out is not None and state != "none":
        if hasattr(out, "out_features"):
            out.out_features = n
        if hasattr(out, "num_embeddings"):
            out.num_embeddings = n
    model.config.vocab_size = n
    if state == "tied" and model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise RuntimeError("vocab trimming lost the tie between input and output embeddings")  # a bug
    return state


def remap_config_ids(config: Any, new_id: Mapping[int, int]) -> None:
    """Token ids in the model config follow the re-indexing; the tokenizer class becomes the fast one."""
    for key in CONFIG_ID_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value in new_id:
            setattr(config, key, new_id[value])
        elif isinstance(value, (list, tuple)):
            setattr(config, key, [new_id.get(v, v) for v in value])
    # the trimmed tokenizer.json must be loaded as it is, never rebuilt from a slow vocabulary
    config.tokenizer_class = "PreTrainedTokenizerFast"


def _first_output(outputs: Any) -> torch.Tensor:
    for key in ("logits", "last_hidden_state"):
        value = getattr(outputs, key, None)
        if isinstance(value, torch.Tensor):
            return value
    return outputs[0]


@torch.no_grad()
def model_outputs(model: nn.Module, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """The model's first output (logits or hidden states) on ``texts``, in eval mode, float32 on CPU."""
    device = next(model.parameters()).device
    max_len = min(128, int(getattr(tokenizer, "model_max_length", 128) or 128))
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        return _first_output(model(**batch)).float().cpu()
    finally:
        model.train(was_training)


def compare_outputs(before: torch.Tensor, after: torch.Tensor, rows_before: int, keep: list[int]) -> float:
    """The largest difference between outputs before and after slicing; a real difference is a bug."""
    if before.shape[-1] == rows_before and after.shape[-1] == len(keep):
        before = before[..., keep]  # vocabulary logits (a language-model head)
    if before.shape != after.shape:
        raise BlockpruneError(f"internal error: output shape changed {tuple(before.shape)} -> {tuple(after.shape)}")
    max_diff = float((before - after).abs().max())
    if not torch.allclose(before, after, rtol=1e-4, atol=1e-5):
        raise BlockpruneError(f"internal error: trimmed model's outputs differ by up to {max_diff:.3g}")
    return max_diff
