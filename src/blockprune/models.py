"""Building and loading classifiers: hub ids, local folders, a tiny random BERT, and compacted models."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from blockprune.encoder import LAYOUT_KEY, resize_encoder
from blockprune.errors import BlockpruneError

log = logging.getLogger(__name__)


@functools.cache
def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (a 3 s TCP probe), or None when it can."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as err:
        return f"{url.hostname}: {err}"
    return None


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hub_kwargs(name_or_path: str) -> dict[str, bool]:
    """``local_files_only=True`` for a hub id when the hub is unreachable, else nothing.

    Offline, huggingface_hub retries each request with backoff before it falls back to its
    cache (47 s for one tokenizer on a machine without DNS); with this a hub id loads from the
    cache at once or fails in seconds. Skipped for
    local folders, with HF_HUB_OFFLINE=1 (already offline) and behind a proxy (a direct probe
    would not tell).
    """
    proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if Path(name_or_path).exists() or _hf_offline() or proxied:
        return {}
    reason = _hub_unreachable()
    if reason is None:
        return {}
    log.warning("Hugging Face hub unreachable (%s); loading %s from the local cache only.", reason, name_or_path)
    return {"local_files_only": True}


def _hub_error(name_or_path: str, err: Exception) -> BlockpruneError:
    offline = _hf_offline()
    unreachable = None if offline or Path(name_or_path).exists() else _hub_unreachable()
    return BlockpruneError(
        f"Could not load model '{name_or_path}': {type(err).__name__}: {err}\n"
        f"It is not a local folder, so it was looked up on the Hugging Face hub"
        f"{' (HF_HUB_OFFLINE=1 is set)' if offline else ''}"
        f"{f' (unreachable: {unreachable}) and in the local cache' if unreachable else ''}. "
        f"Fix: on a machine with internet run `hf download {name_or_path}` (it lands in the Hugging Face "
        "cache; copy that cache or set HF_HOME here), or set model.tokenizer=<local folder with config.json, "
        "weights and tokenizer files> (model.net.name_or_path follows it)."
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer from a local folder or a hub id, with a clear error offline."""
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **hub_kwargs(name_or_path))
    except (OSError, ValueError) as err:
        raise _hub_error(name_or_path, err) from err


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> None:
    """``tokenizer.save_pretrained(folder)``, loadable by transformers 4.x too (Optimum needs 4.x).

    transformers 5 records its fast tokenizer's class as ``TokenizersBackend``, a name 4.x lacks;
    ``PreTrainedTokenizerFast`` is the same class in 5.x and loads the same tokenizer.json in 4.x."""
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_classifier(
    name_or_path: str,
    num_labels: int,
    id2label: dict[int, str],
    label2id: dict[str, int],
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Load a pretrained or fine-tuned encoder with a sequence-classification head, in float32.

    A fine-tuned head whose label set differs from the data's is replaced (a new head is
    trained) and said so in the log; an already compacted blockprune model keeps its layout.
    """
    if Path(name_or_path, "config.json").is_file() and LAYOUT_KEY in json.loads(
        Path(name_or_path, "config.json").read_text(encoding="utf-8")
    ):
        model = load_model(name_or_path)
        if model.config.label2id != label2id:
            raise BlockpruneError(
                f"The compacted model in {name_or_path} was trained on labels {sorted(model.config.label2id)}, "
                f"but the data has {sorted(label2id)}. Use a dense model as starting point for new labels."
            )
        return model
    hub = hub_kwargs(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **hub)
    except (OSError, ValueError) as err:
        raise _hub_error(name_or_path, err) from err
    same_labels = getattr(config, "label2id", None) == label2id
    if not same_labels and config.num_labels not in (2, num_labels):  # 2 is transformers' default
        log.warning(
            "%s has a %d-label head; a new %d-label head is trained.", name_or_path, config.num_labels, num_labels
        )
    return AutoModelForSequenceClassification.from_pretrained(
        name_or_path,
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
        dtype=torch.float32,
        ignore_mismatched_sizes=not same_labels,
        trust_remote_code=trust_remote_code,
        **hub,
    )


def build_tiny_classifier(
    tokenizer: str,
    num_labels: int,
    id2label: dict[int, str],
    label2id: dict[str, int],
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 256,
    seed: int = 0,
) -> PreTrainedModel:
    """A small randomly initialised BERT using a real tokenizer's vocabulary, for fast tests."""
    tok = load_tokenizer(tokenizer)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def model_max_length(model: PreTrainedModel) -> int:
    """Longest input the model's position embeddings allow (RoBERTa-style offsets included)."""
    cfg = model.config
    roberta_like = getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")
    offset = (cfg.pad_token_id or 0) + 1 if roberta_like else 0
    return int(cfg.max_position_embeddings) - offset


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    """Load any classifier blockprune saved (dense, vocabulary-trimmed or compacted) in one call.

    A compacted model has layers of different widths, which ``from_pretrained`` cannot build
    from a config; the layout recorded in its config lets us build the right shapes first.
    Folders that are not a saved sequence classifier get a clear error, not a random head.
    """
    path = Path(path)
    expected = (
        "Give a folder written by save_pretrained holding a sequence classifier (config.json + model.safetensors)."
    )
    if not path.is_dir():
        raise BlockpruneError(f"Model folder {path} does not exist or is not a folder. {expected}")
    if not (path / "config.json").is_file():
        found = sorted(x.name for x in path.iterdir())[:10]
        raise BlockpruneError(f"{path} has no config.json (found: {found or 'nothing'}). {expected}")
    archs = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise BlockpruneError(
            f"{path} holds a model without a sequence-classification head (architectures={archs or 'not recorded'}): "
            "it would get a randomly initialised classifier. "
            "Fine-tune it first (python train.py model.net.name_or_path=...)."
        )
    config = AutoConfig.from_pretrained(path)
    layout = getattr(config, LAYOUT_KEY, None)
    if layout is None:
        return AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    resize_encoder(model, layout)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BlockpruneError(f"{weights} is missing; the folder is incomplete (was the job interrupted?).")
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise BlockpruneError(
            f"{weights} does not match its layout: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    model.tie_weights()
    return model.float().eval()


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """Parameter names that save_pretrained leaves out because they are tied to another."""
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if not isinstance(tied, dict) else set(tied.keys())
