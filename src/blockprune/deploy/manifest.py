"""``deploy.json`` in a model folder: what was exported, how it was verified, which runtime serves.

``predict`` reads ``fastest`` from it, so the runtime a folder is served in is one that was
measured and re-tested on this kind of machine, never assumed. The CPU it was measured on is
recorded, because what int8 / bf16 give depends on the instructions (VNNI, AMX) the CPU has.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import torch

from blockprune.atomic import OutputExistsError, write_json
from blockprune.errors import BlockpruneError
from blockprune.machine import cpu, version

MANIFEST = "deploy.json"
SCHEMA = "blockprune.deploy/1"


def cpu_info() -> dict[str, Any]:
    """CPU model, the flags above that it has, core count, threads, library versions."""
    name, flags = cpu()
    return {
        "cpu": name,
        "flags": flags,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": version("onnxruntime"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(model_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    path = Path(model_dir) / MANIFEST
    write_json(path, {"schema": SCHEMA, **record})
    return path


def check_manifest(model_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse, before any work, to replace a deploy.json that blockprune did not write (no blockprune schema)."""
    path = Path(model_dir) / MANIFEST
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    try:
        ours = json.loads(path.read_text(encoding="utf-8")).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputExistsError(
            f"{path} exists and was not written by blockprune; nothing was changed. Fix: move it away, "
            "or pass --overwrite (overwrite=True) to replace it."
        )


def read_manifest(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise BlockpruneError(
            f"{path} is not valid JSON ({err}). Fix: re-run blockprune export {model_dir} --runtime ..."
        ) from None


def serving_runtime(model_dir: str | os.PathLike, override: str | None = None) -> str:
    """The runtime to serve ``model_dir`` in: ``override``, else the fastest verified one, else torch."""
    if override:
        return override
    manifest = read_manifest(model_dir) or {}
    return manifest.get("fastest") or "torch"
