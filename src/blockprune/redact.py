"""Keep API keys and tokens out of every file a job writes or logs: one redaction path.

Tokens belong in the environment (``HF_TOKEN``, ``WANDB_API_KEY``), which no blockprune output
records. Whatever reaches a config, an override, an error message or a log line anyway is
masked (``***``) before it is written:

- values under a secret-looking key (``token``, ``hf_token``, ``hfToken``, ``wandbApiKey``,
  ``Authorization``, ``auth``, ``bearer``, ``pwd``, ``pass``, ``creds``, ``private_key``,
  ``passphrase``, ``cookie``, ...; not ``tokenizer`` nor ``unk_token``-style special tokens);
- URL user-info and query strings (``https://user:pw@host/x.csv?token=...``);
- values shaped like a secret whatever their key: Hugging Face ``hf_...``, GitHub ``ghp_...``,
  OpenAI-style ``sk-...``, 40-hex W&B keys;
- Hydra overrides, parsed with Hydra's own override parser (quoted values, dicts, lists).

Used by ``atomic.write_json`` (results.json, data_report.json, failure records), checkpoints
and loggers (``redacted_container``), ``sys.argv`` (W&B), log records (``RedactingFilter``) and
Hydra's saved ``.hydra/*.yaml`` and ``multirun.yaml``. Under a launcher that pickles the sweep
(submitit), ``RedactHydraOutputs.on_multirun_start`` first moves each secret of the command line
into an environment variable the jobs inherit, so the pickles and ``multirun.yaml`` hold only
``${oc.env:...}`` references.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

MASK = "***"
_WORDS = (
    r"token|api_?key|access_?key|secret(?:_?key)?|password|passwd|pwd|pass|passphrase|credentials?|creds"
    r"|authorization|auth|bearer|private_?key|cookie|session_?token"
)
#: The last word(s) of a normalised key (camelCase and ``.-/`` turned into ``_``, lower case).
_SECRET_KEY = re.compile(rf"(?:^|_)(?:{_WORDS})$")
#: Special tokens of a tokenizer: names, not secrets.
_NOT_SECRET_KEY = re.compile(
    r"(?:^|_)(?:unk|pad|cls|sep|mask|bos|eos)_token$|(?:^|_)(?:max|min|num|n|per|total|mean)_tokens?$"
)
#: A number under a ``*token`` key is a count (``flops_per_token``), not a token.
_TOKEN_WORD = re.compile(r"token$")
#: Keys whose 40-hex values are commit ids or digests, not keys.
_DIGEST_KEY = re.compile(r"commit|sha\d*|hash|revision|digest|fingerprint|checksum", re.IGNORECASE)
_KEY_CHARS = r"[A-Za-z][\w.\-/]*"
#: ``key=value`` / ``key: value`` / ``"key": "value"`` inside free text (overrides, messages, tracebacks).
_PAIR = re.compile(
    rf"(?P<key>\+{{0,2}}{_KEY_CHARS})(?P<q1>['\"]?)(?P<sep>\s*[:=]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|\{[^}]*\}|\[[^\]]*\]|[^\s,;&)}\]]+)"
)
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_VALUES = [
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"),  # GitHub
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),  # OpenAI-style
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),  # Slack
]
_HEX40 = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{40}(?![0-9a-fA-F])")  # W&B API keys


def _normal(key: str) -> str:
    return re.sub(r"[.\-/\s]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)).lower().lstrip("+~_")


def is_secret_key(key: Any) -> bool:
    """True for ``token``, ``hf_token``, ``hfToken``, ``Authorization``, ``model.creds``; not ``tokenizer``."""
    if not isinstance(key, str):
        return False
    k = _normal(key)
    return bool(_SECRET_KEY.search(k)) and not _NOT_SECRET_KEY.search(k)


def _mask_url(match: re.Match) -> str:
    url = match.group(0)
    scheme, rest = url.split("://", 1)
    head, sep, tail = rest.partition("/")
    if "@" in head:
        head = MASK + "@" + head.rsplit("@", 1)[1]
    path = sep + tail
    if "?" in path:
        path = path.split("?", 1)[0] + "?" + MASK
    return f"{scheme}://{head}{path}"


def redact_text(text: str, digest_ok: bool = False) -> str:
    """Mask the secrets in free text: overrides, URLs, messages, tracebacks, log lines."""
    if not text:
        return text
    out = _URL.sub(_mask_url, text)
    out = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    out = _PAIR.sub(
        lambda m: (
            (m.group(0)[: m.start("value") - m.start(0)] + MASK)
            if is_secret_key(m.group("key")) and not m.group("value").startswith("${")
            else m.group(0)
        ),
        out,
    )
    for pattern in _SECRET_VALUES:
        out = pattern.sub(MASK, out)
    return out if digest_ok else _HEX40.sub(MASK, out)


def _is_value(value: Any) -> bool:
    return value not in (None, "") and not (isinstance(value, str) and value.startswith("${"))


def _mask_all(value: Any, key: str = "") -> Any:
    """Every leaf under a secret key (``creds: {user: .., key: ..}``), interpolations kept."""
    if isinstance(value, dict):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_all(v) for v in value)
    if isinstance(value, (int, float)) and _TOKEN_WORD.search(_normal(key)):
        return value
    return MASK if _is_value(value) else value


def redact(obj: Any, key: Any = None) -> Any:
    """A copy of plain data (dicts, lists, strings) with secret values replaced by ``***``.

    Interpolations such as ``${oc.env:HF_TOKEN}`` are kept: they name where the secret comes
    from, not the secret. A string that parses as a Hydra override is redacted as one.
    """
    if isinstance(obj, dict):
        return {k: (_mask_all(v, k) if is_secret_key(k) else redact(v, k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, key) for v in obj)
    if isinstance(obj, str):
        return redact_override(obj) or redact_text(
            obj, digest_ok=isinstance(key, str) and bool(_DIGEST_KEY.search(key))
        )
    return obj


# --- Hydra overrides --------------------------------------------------------------------------

_OVERRIDE_START = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/@]*=")


def _parse_override(text: str) -> Any | None:
    if not _OVERRIDE_START.match(text):
        return None
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return OverridesParser.create().parse_override(text)
    except Exception:  # noqa: BLE001 - not an override after all: redacted as text
        return None


def _render(value: Any) -> str:
    """Hydra override syntax for a plain value (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


_SWEEP = object()


def _override_value(override: Any) -> Any:
    """The parsed value, or ``_SWEEP`` for a sweep or function (never rendered back)."""
    value = override.value()
    if value is not None and not isinstance(value, (str, int, float, bool, dict, list)):
        return _SWEEP
    return value


def _map_secrets(value: Any, key: str, fn, under_secret: bool = False) -> Any:
    """``value`` with each secret leaf replaced by ``fn(leaf, secret_key)``; everything under a
    secret key (``creds: {user: .., key: ..}``) counts as secret."""
    secret = under_secret or is_secret_key(key)
    if isinstance(value, dict):
        return {k: _map_secrets(v, str(k), fn, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_secrets(v, key, fn, secret) for v in value]
    if isinstance(value, str) and _is_value(value) and (secret or redact_text(value) != value):
        return fn(value, secret)
    if value is not None and not isinstance(value, str) and secret:
        return fn(str(value), secret)
    return value


def _mask_leaf(leaf: str, secret: bool) -> str:
    return MASK if secret else redact_text(leaf)


def redact_override(text: str) -> str | None:
    """A Hydra override with its secrets masked, or None if ``text`` is not an override."""
    override = _parse_override(text)
    if override is None:
        return None
    prefix = text[: text.index("=") + 1]
    key = override.key_or_group
    value = _override_value(override)
    if value is _SWEEP:
        # sweeps (a,b), choice(...), range(...): the whole value goes if the key is secret or any part looks secret
        rest = text[len(prefix) :]
        return prefix + MASK if is_secret_key(key) or redact_text(rest) != rest else text
    clean = _map_secrets(value, key, _mask_leaf)
    if clean == value:
        return text
    return prefix + (MASK if isinstance(clean, str) else _render(clean))


# --- Configs and files ------------------------------------------------------------------------


@contextmanager
def redacted_argv() -> Iterator[None]:
    """``sys.argv`` with secrets masked for the duration: W&B records the command line in the
    run's metadata when the run starts (the first ``log_hyperparams``)."""
    original = sys.argv
    sys.argv = redact(list(original))
    try:
        yield
    finally:
        sys.argv = original


def redacted_container(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """``OmegaConf.to_container`` with secrets masked: what a job may write or log of its config."""
    return redact(OmegaConf.to_container(cfg, resolve=resolve))


def redact_yaml_file(path: Path) -> None:
    """Rewrite a YAML file Hydra saved with its secrets masked (atomically; unchanged files are left alone)."""
    from blockprune.atomic import atomic_path

    if not path.is_file():
        return
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    clean = redact(data)
    if clean != data:
        with atomic_path(path) as tmp:
            OmegaConf.save(OmegaConf.create(clean), tmp)


class RedactingFilter(logging.Filter):
    """Masks secrets in every log record a handler writes (the job's log file, the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's to report
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_filter() -> None:
    """Add ``RedactingFilter`` to every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _env_name(secret: str) -> str:
    return "BLOCKPRUNE_SECRET_" + hashlib.sha256(secret.encode()).hexdigest()[:12].upper()


def _to_env(secret: str, _: bool = True) -> str:
    name = _env_name(secret)
    os.environ[name] = secret
    return "${oc.env:" + name + "}"


def env_indirect_override(text: str) -> str:
    """An override whose secret leaves are moved into environment variables (``${oc.env:...}``):
    the job still gets the value, and nothing that pickles or saves the override holds it."""
    override = _parse_override(text)
    if override is None:
        return text
    value = _override_value(override)
    if value is _SWEEP:
        return text  # a sweep: each value is its own job's; masked in the saved files only
    clean = _map_secrets(value, override.key_or_group, _to_env)
    if clean == value:
        return text
    prefix = text[: text.index("=") + 1]
    return prefix + (clean if isinstance(clean, str) else _render(clean))


def _mask_config_in_place(node: Any, under_secret: bool = False) -> None:
    """Mask the composed config's secret values (the jobs recompose theirs from the overrides)."""
    if isinstance(node, DictConfig):
        for k in list(node.keys()):
            if k == "hydra":
                continue
            secret = under_secret or is_secret_key(k)
            child = node._get_node(k)
            if isinstance(child, (DictConfig, ListConfig)):
                _mask_config_in_place(child, secret)
                continue
            raw = child._value() if hasattr(child, "_value") else None
            if isinstance(raw, str) and raw.startswith("${"):
                continue
            clean = MASK if secret and _is_value(raw) else redact(raw, k) if isinstance(raw, str) else raw
            if clean != raw:
                with open_dict(node):
                    node[k] = clean
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            child = node._get_node(i)
            if isinstance(child, (DictConfig, ListConfig)):
                _mask_config_in_place(child, under_secret)
                continue
            raw = child._value() if hasattr(child, "_value") else None
            if isinstance(raw, str) and raw.startswith("${"):
                continue
            clean = MASK if under_secret and _is_value(raw) else redact(raw) if isinstance(raw, str) else raw
            if clean != raw:
                node[i] = clean


class RedactHydraOutputs(Callback):
    """Hydra callback: masks secrets in what Hydra saves and what a launcher submits.

    ``on_multirun_start`` runs before the sweeper saves ``multirun.yaml`` and before a launcher
    (submitit, joblib) pickles the sweep: secret override values move to environment variables
    the jobs inherit, and the composed config's secrets are masked. ``on_job_start`` masks the
    job's ``.hydra/*.yaml`` (saved just before) and filters the job's log handlers.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with open_dict(config):
            task = config.hydra.overrides.task
            for i in range(len(task)):
                task[i] = env_indirect_override(task[i])
            _mask_config_in_place(config)
            job = config.hydra.job
            if isinstance(job.get("override_dirname"), str):  # computed from the typed overrides
                job.override_dirname = redact_text(job.override_dirname)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_filter()
        hydra = config.hydra
        if hydra.output_subdir is not None:
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                redact_yaml_file(Path(hydra.runtime.output_dir, hydra.output_subdir, name))
        if hydra.mode is not None and hydra.mode.name == "MULTIRUN":
            redact_yaml_file(Path(hydra.sweep.dir, "multirun.yaml"))
