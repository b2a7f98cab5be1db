"""Keep API keys and tokens out of every config a job writes or logs.

Tokens belong in the environment (``HF_TOKEN``, ``WANDB_API_KEY``), which no blockprune output
records. A config value under a secret-looking key (``token``, ``hf_token``, ``api_key``,
``password``, ...) or looking like a Hugging Face token is masked in results.json, checkpoints,
the loggers' hyper-parameters and Hydra's own ``.hydra/*.yaml`` and ``multirun.yaml``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

MASK = "***"
_SECRET_WORDS = r"(?:token|api[_-]?key|access[_-]?key|secret(?:[_-]?key)?|password|passwd|credentials?)"
#: A key whose last part ends in a secret word: ``token``, ``hf_token``, ``wandb_api_key``; not ``tokenizer``.
SECRET_KEY = re.compile(rf"(?:^|[_.\-/]){_SECRET_WORDS}$", re.IGNORECASE)
#: ``key=value`` inside a string (Hydra overrides, ``override_dirname``).
_OVERRIDE = re.compile(r"(?<![^\s,])(\+{0,2}[\w.\-/]+)=([^,\s]+)")
#: Values that are secrets whatever their key: Hugging Face user access tokens.
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.search(key))


def redact(obj: Any) -> Any:
    """A copy of a plain config (dicts, lists, strings) with secret values replaced by ``***``.

    Interpolations such as ``${oc.env:HF_TOKEN}`` are kept: they name where the secret comes
    from, not the secret.
    """
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and _is_value(v) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    if isinstance(obj, str):
        masked = _OVERRIDE.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_key(m.group(1)) else m.group(0), obj)
        return _SECRET_VALUE.sub(MASK, masked)
    return obj


def _is_value(value: Any) -> bool:
    return value not in (None, "") and not (isinstance(value, str) and value.startswith("${"))


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


class RedactHydraOutputs(Callback):
    """Hydra callback: Hydra saves ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``
    (and a sweep's ``multirun.yaml``) just before it starts the job; mask their secrets then."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = config.hydra
        if hydra.output_subdir is not None:
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                redact_yaml_file(Path(hydra.runtime.output_dir, hydra.output_subdir, name))
        if hydra.mode is not None and hydra.mode.name == "MULTIRUN":
            redact_yaml_file(Path(hydra.sweep.dir, "multirun.yaml"))
