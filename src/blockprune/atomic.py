"""Atomic file output: write to a temporary name in the same folder, then rename.

Used for results.json, saved models and (as a Lightning plugin) checkpoints.

An interrupted job therefore never leaves a file that a reader would take as complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path (file or folder); rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp_target, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indent 2, UTF-8, non-ASCII kept readable)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Delete what a killed ``atomic_path`` left behind (``.<name>.*.tmp``) in ``folder``."""
    for tmp in Path(folder).glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that writes beside the target and renames, with an fsync.

    Lightning's own writer stages the file in the system temp folder and *moves* it; when that
    folder is on another filesystem (node-local /tmp, outputs on NFS) the move copies into the
    final name, so a kill mid-copy leaves a truncated ``last.ckpt`` that the next resume reads.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
