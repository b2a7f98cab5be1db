"""Hub-ready model folders: a model card (README.md) from a job's results, and an optional upload.

The card is written with huggingface_hub's ``ModelCard`` / ``ModelCardData``, so that on the
Hub a saved model shows its language, task, base model, data, test metrics (with their 95 %
intervals where the job kept its predictions), the CO2 CodeCarbon measured, what compression
removed and what it bought (parameters, heads and FFN neurons left, measured speed-up), and
how to load it. ``hub.push=true hub.repo_id=<user>/<name>`` uploads the folder; the token
comes from the environment (``HF_TOKEN``) or ``hf auth login``, and is never logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from blockprune.errors import BlockpruneError, ConfigError
from blockprune.redact import redact_text

log = logging.getLogger("blockprune")


def _fmt_params(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f}M"


def _looks_like_hub_id(value: Any) -> bool:
    text = str(value or "")
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def _setting(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The saved model's test metrics: after vocabulary trimming, else after compaction, else the job's."""
    return results.get("metrics_final") or results.get("metrics_compacted") or results.get("metrics") or {}


def metric_intervals(results: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """95 % bootstrap intervals (fractions) of accuracy and macro-F1, when the job stored its test predictions."""
    record = results.get("predictions")
    if not record or not record.get("id"):
        return {}
    from blockprune.evaluation import record_interval

    iv = record_interval([record])
    return {
        "test/acc": (iv["acc_low"] / 100, iv["acc_high"] / 100),
        "test/f1_macro": (iv["f1_low"] / 100, iv["f1_high"] / 100),
    }


def _dataset(config: dict, hub: dict) -> tuple[str, str]:
    """(id, name) of the training data for the card's metadata: ``hub.dataset`` or the data file's name."""
    if hub.get("dataset"):
        return str(hub["dataset"]), str(hub["dataset"])
    source = _setting(config, "data.file") or _setting(config, "data.train_file") or "data"
    if isinstance(source, dict):
        source = source.get("url", "data")
    if "://" in str(source):  # a URL: its path only (user-info and query string may hold a key)
        source = urlsplit(str(source)).path or "data"
    path = Path(str(source))
    return path.stem.lower(), f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def build_card_data(results: dict[str, Any], hub: dict[str, Any]):
    """``ModelCardData`` of a finished job: the metadata block of its model card."""
    from huggingface_hub import EvalResult, ModelCardData

    config = results.get("config") or {}
    metrics = final_metrics(results)
    dataset_id, dataset_name = _dataset(config, hub)
    evals = []
    for key, metric_type, name in (("test/acc", "accuracy", "Accuracy"), ("test/f1_macro", "f1", "Macro-F1")):
        if isinstance(metrics.get(key), (int, float)):
            evals.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=dataset_id,
                    dataset_name=dataset_name,
                    dataset_split="test",
                    metric_type=metric_type,
                    metric_value=round(float(metrics[key]), 4),
                    metric_name=name,
                    metric_args={"average": "macro"} if metric_type == "f1" else None,
                )
            )
    base = hub.get("base_model") or next(
        (
            v
            for v in (_setting(config, "model.net.name_or_path"), _setting(config, "model.tokenizer"))
            if _looks_like_hub_id(v)
        ),
        None,
    )
    tags = ["blockprune", "text-classification"]
    if results.get("pruning"):
        tags += ["pruned", "block-movement-pruning"]
    if _setting(config, "distill._target_"):
        tags.append("knowledge-distillation")
    if results.get("vocab"):
        tags.append("vocabulary-trimmed")
    carbon = results.get("carbon") or {}
    co2 = None
    if isinstance(carbon.get("training"), dict):
        co2 = {
            "emissions": round(1000 * float(carbon["training"]["emissions_kg"]), 4),
            "source": "CodeCarbon",
            "training_type": "fine-tuning" + (" with pruning" if results.get("pruning") else ""),
            "geographical_location": carbon.get("country_iso_code"),
        }
    return ModelCardData(
        language=hub.get("language"),
        license=hub.get("license"),
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=base,
        datasets=[hub["dataset"]] if hub.get("dataset") else None,
        tags=tags,
        model_name=hub.get("model_name") or _model_name(results, base, hub),
        eval_results=evals or None,
        co2_eq_emissions=co2,
        metrics=["accuracy", "f1"] if evals else None,
    )


def _model_name(results: dict[str, Any], base: str | None, hub: dict[str, Any]) -> str:
    """The repo's name when uploading, else the base model's name and what was done to it."""
    if hub.get("push") and hub.get("repo_id"):
        return str(hub["repo_id"]).split("/")[-1]
    config = results.get("config") or {}
    name = Path(str(base or _setting(config, "model.tokenizer") or results.get("task_name") or "model")).name
    pruning = results.get("pruning") or {}
    if pruning:
        name += f"-pruned{round(100 * pruning.get('target_sparsity', 0))}"
    return name + ("-kd" if _setting(config, "distill._target_") else "")


def _where(value: Any) -> str:
    """A hub id as it is; a local folder by its name only (the card travels to other machines)."""
    if not value:
        return "not recorded"
    if _looks_like_hub_id(value):
        return str(value)
    path = Path(str(value))
    if "teachers" in path.parts[-4:-1]:
        key = path.parts[path.parts.index("teachers", len(path.parts) - 4) + 1]
        return f"the dense model fine-tuned on the same data and settings (blockprune teacher {key})"
    return f"{path.parent.name + '/' if path.name == 'model' else ''}{path.name} (a local folder)"


def _compression_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    dense, params = (results.get("dense") or {}).get("params") or {}, results.get("params") or {}
    if params:
        line = f"- Parameters: {_fmt_params(params.get('total'))}"
        if dense.get("total"):
            fewer = 100 * (1 - params["total"] / dense["total"])
            line += f" (dense model: {_fmt_params(dense['total'])}, {fewer:.1f} % fewer)"
        lines.append(
            line + f"; encoder {_fmt_params(params.get('encoder'))}, embeddings {_fmt_params(params.get('embeddings'))}"
        )
    pruning, compaction = results.get("pruning") or {}, results.get("compaction") or {}
    if pruning:
        lines.append(
            f"- Block movement pruning ({pruning.get('method')}): "
            f"{100 * pruning.get('sparsity_encoder_linear', 0):.1f} % of the encoder's linear weights removed "
            f"(target {100 * pruning.get('target_sparsity', 0):.0f} %)"
        )
    if compaction:
        lines.append(
            f"- Attention heads left: {compaction.get('heads_left')} of {compaction.get('heads_total')}; "
            f"FFN neurons left: {compaction.get('ffn_neurons_left')} of {compaction.get('ffn_total')} "
            f"(per layer: {compaction.get('ffn_kept')})"
        )
    vocab = results.get("vocab") or {}
    if vocab:
        lines.append(
            f"- Vocabulary trimmed to the pieces the training texts use: {vocab.get('vocab_size_after')} of "
            f"{vocab.get('vocab_size_before')} pieces"
        )
    speed = results.get("speed") or {}
    if speed.get("latency_ms") is not None:
        env = speed.get("environment") or {}
        lines.append(
            f"- Measured speed-up over the dense model: {speed.get('speedup', 1.0):.2f}x "
            f"({speed.get('dense_latency_ms', 0):.1f} ms -> {speed['latency_ms']:.1f} ms per batch of "
            f"{speed.get('batch_size')} x {speed.get('seq_len')} tokens, {speed.get('device')} {speed.get('dtype')}, "
            f"{env.get('device_name') or env.get('cpu', '')}, {env.get('date', '')})"
        )
    return lines


def card_text(results: dict[str, Any], hub: dict[str, Any], repo_id: str | None = None) -> str:
    """The whole README.md: metadata block, then what the model is, its numbers and how to load it."""
    from huggingface_hub import ModelCard

    data = build_card_data(results, hub)
    config = results.get("config") or {}
    metrics, intervals = final_metrics(results), metric_intervals(results)
    rows = []
    for key, name in (("test/acc", "Accuracy"), ("test/f1_macro", "Macro-F1")):
        if isinstance(metrics.get(key), (int, float)):
            iv = intervals.get(key)
            rows.append(
                f"| {name} | {100 * metrics[key]:.2f} | "
                + (f"{100 * iv[0]:.2f} - {100 * iv[1]:.2f} |" if iv else "not computed |")
            )
    split = (results.get("data") or {}).get("split_sizes") or {}
    init_from = _setting(config, "init_from")
    carbon = results.get("carbon") or {}
    where = repo_id or "path/to/this/folder"
    compacted = bool(results.get("compaction"))
    lines = [
        f"# {data.model_name}",
        "",
        f"A {'pruned and compacted ' if compacted else ''}text classifier trained with blockprune (block movement "
        "pruning, knowledge distillation, compaction).",
        "",
        f"- Base model: {data.base_model or _where(_setting(config, 'model.tokenizer'))}",
        f"- Started from: {_where(init_from) if init_from else 'the base model'}",
        f"- Data: {_dataset(config, hub)[1]} "
        f"(train/val/test: {split.get('train')}/{split.get('val')}/{split.get('test')} texts)",
        f"- Labels: {', '.join(sorted((_setting(results, 'data.label2id') or {}), key=str)) or 'see config.json'}",
        "",
        "## Test results",
        "",
        "| metric | value (%) | 95 % interval |",
        "|---|---|---|",
        *rows,
        "",
        "## Compression",
        "",
        *(_compression_lines(results) or ["- none: a dense fine-tuned model"]),
        "",
    ]
    if isinstance(carbon.get("training"), dict):
        lines += [
            "## Energy and emissions (CodeCarbon)",
            "",
            f"- Training: {carbon['training']['energy_kwh']:.6f} kWh, "
            f"{1000 * carbon['training']['emissions_kg']:.4f} g CO2eq ({carbon.get('country_iso_code')} grid)",
            "",
        ]
    folder = f"snapshot_download({where!r})" if repo_id else repr(where)
    load_compacted = (
        ("from huggingface_hub import snapshot_download\n" if repo_id else "")
        + "from blockprune import load_model\nfrom transformers import AutoTokenizer\n\n"
        + f"model = load_model({folder})  # its layers have different widths: load_model builds them\n"
        + f"tokenizer = AutoTokenizer.from_pretrained({folder})"
    )
    load_plain = (
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({where!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({where!r})\n"
        "# or: from blockprune import load_model; model = load_model(<folder>)"
    )
    lines += ["## How to load", "", "```python", load_compacted if compacted else load_plain, "```", ""]
    if compacted:
        lines += [
            "Plain `transformers` cannot build this model from its config (its layers have different widths); "
            "`pip install blockprune` and `blockprune.load_model` can.",
            "",
        ]
    settings = {
        k: _setting(config, k)
        for k in ("seed", "trainer.max_epochs", "module.lr", "data.max_length", "distill.temperature", "distill.alpha")
    }
    lines += [
        "## Training settings",
        "",
        *(f"- `{k}`: {v}" for k, v in settings.items() if v is not None),
        "- the whole configuration: `config` in the job's `results.json`",
        "",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _hub_settings(cfg: DictConfig | dict | None) -> dict[str, Any]:
    hub = (cfg or {}).get("hub") if cfg is not None else None
    if isinstance(hub, DictConfig):
        hub = OmegaConf.to_container(hub, resolve=True)
    return dict(hub or {"card": True, "language": "mr"})


def check_push(cfg: DictConfig) -> None:
    """Before training: with ``hub.push=true``, refuse at once what would make the upload fail
    at the end (no repo_id, no token, hub unreachable), naming the fix."""
    hub = _hub_settings(cfg)
    if not hub.get("push"):
        return
    if not hub.get("repo_id") or str(hub["repo_id"]).count("/") != 1:
        raise ConfigError(f"hub.push=true needs hub.repo_id=<user or org>/<name> (got {hub.get('repo_id')!r}).")
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError(
            "hub.push=true but no Hugging Face token: set HF_TOKEN in the environment (a write token "
            "from https://huggingface.co/settings/tokens) or run `hf auth login`."
        )
    from blockprune.models import _hf_offline, _hub_unreachable

    reason = "HF_HUB_OFFLINE is set" if _hf_offline() else _hub_unreachable()
    if reason:
        raise BlockpruneError(
            f"hub.push=true but the Hugging Face hub cannot be reached ({reason}). Run without hub.push; the saved "
            f"model folder carries its README.md, and on a machine with internet upload it with "
            f"`hf upload {hub['repo_id']} <job folder>/model .` (HF_TOKEN set)."
        )


def publish(results: dict[str, Any], cfg: DictConfig | dict | None = None) -> dict[str, Any]:
    """Write the model card into the job's saved model folder and, with ``hub.push``, upload the
    folder. Returns what to record in results.json under ``hub``; an upload that fails is
    logged with the fix (the model and its card stay on disk), not raised."""
    hub = _hub_settings(cfg)
    model_dir = results.get("model_dir")
    if not model_dir or not hub.get("card", True):
        return {}
    card = Path(model_dir) / "README.md"
    text = card_text(results, hub, hub.get("repo_id") if hub.get("push") else None)
    card.write_text(redact_text(text), encoding="utf-8")  # a data URL's ?token= or a key never reaches the card
    out: dict[str, Any] = {"card": str(card)}
    if not hub.get("push"):
        return out
    from huggingface_hub import HfApi

    repo_id = str(hub["repo_id"])
    try:
        api = HfApi()
        api.create_repo(repo_id, private=bool(hub.get("private", True)), exist_ok=True)
        commit = api.upload_folder(
            folder_path=model_dir, repo_id=repo_id, commit_message=f"blockprune: {results.get('task_name', 'model')}"
        )
        out.update(repo_id=repo_id, url=f"https://huggingface.co/{repo_id}", commit=getattr(commit, "oid", None))
        log.info("hub: uploaded %s to %s", model_dir, out["url"])
    except Exception as err:  # noqa: BLE001 - the job's results must still be written
        message = str(err).replace(os.environ.get("HF_TOKEN") or "\0", "***")
        log.error(
            "hub: upload of %s to %s failed: %s. Upload later with `hf upload %s %s .`",
            model_dir,
            repo_id,
            message,
            repo_id,
            model_dir,
        )
        out.update(repo_id=repo_id, error=f"{type(err).__name__}: {message}")
    return out
