"""Atomic file output: write to a temporary name in the same folder, then rename.

Used for results.json, saved models and (as a Lightning plugin) checkpoints.

An interrupted job therefore never leaves a file that a reader would take as complete.
A command never deletes a folder it did not write: a file output refuses an existing folder,
and a folder output replaces only an earlier output of the same kind (it carries the marker
file ``.blockprune-output`` naming that kind, or holds nothing the new output would not
rewrite); anything else needs ``overwrite=True`` (``--overwrite`` on the command line).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from blockprune.errors import BlockpruneError

#: Written inside every folder output: its kind, so a later run knows the folder is its own.
MARKER = ".blockprune-output"
#: The kind of a saved Hugging Face model folder (a job's ``model/``, ``trim-vocab``'s output).
MODEL_KIND = "hf-model"


class OutputExistsError(BlockpruneError):
    """The output path holds something this command did not write; nothing was changed."""


def _marker_kind(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_output(
    path: str | os.PathLike, kind: str | None = None, overwrite: bool = False, new_entries: set[str] | None = None
) -> None:
    """Raise OutputExistsError unless writing a ``kind`` output (None: a file) at ``path`` loses nothing.

    ``new_entries`` (the names the new folder will hold) also allows replacing an unmarked
    folder whose every entry the new output rewrites (a model saved before markers existed).
    """
    target = Path(path)
    if overwrite or not (target.exists() or target.is_symlink()):
        return
    if kind is None:
        if target.is_dir() and not target.is_symlink():
            raise OutputExistsError(
                f"{target} is an existing folder; this command writes a file there and would delete the folder. "
                f"Fix: give a file path (for example {target / 'model.onnx'}), or pass --overwrite "
                "(overwrite=True) to replace the folder and everything in it."
            )
        return  # a file replaces a file: the same kind of output
    if not target.is_dir() or target.is_symlink():
        raise OutputExistsError(
            f"{target} exists and is not a folder; this command writes a folder there. "
            "Fix: choose another path, or pass --overwrite (overwrite=True) to replace it."
        )
    entries = {p.name for p in target.iterdir()}
    if not entries or _marker_kind(target) == kind:
        return
    if new_entries is not None and entries <= new_entries:
        return
    shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
    raise OutputExistsError(
        f"{target} is an existing folder that this command did not write (it holds {shown}); "
        "nothing was changed. Fix: choose a new or empty folder, or pass --overwrite (overwrite=True) "
        "to replace the folder and everything in it."
    )


@contextmanager
def atomic_path(path: str | os.PathLike, *, kind: str | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` on success.

    ``kind`` None: the output is a file, and an existing folder at ``path`` is refused.
    ``kind`` a name: the output is a folder, marked with ``kind``; it replaces an existing folder
    only if that folder is an earlier output of the same kind (see ``check_output``).
    ``overwrite`` replaces whatever is there. A file output is checked before the caller's work,
    a folder output before the rename (when its entries are known); a caller with long work
    calls ``check_output`` first. On refusal nothing at ``path`` changes.
    """
    target = Path(path)
    if kind is None:
        check_output(target, kind, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        if kind is not None and tmp_target.is_dir():
            (tmp_target / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        if kind is not None or target.is_dir():
            new = {p.name for p in tmp_target.iterdir()} if tmp_target.is_dir() else None
            check_output(target, kind, overwrite, new_entries=new)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # checked above: our own earlier output, or overwrite=True
        elif target.is_symlink() or (target.exists() and tmp_target.is_dir()):
            target.unlink()
        os.replace(tmp_target, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indent 2, UTF-8, non-ASCII kept readable), secrets masked.

    Every JSON artefact (results.json, data_report.json, a failure's error and traceback,
    bench.json) goes through ``redact``: one path, so no writer can forget it.
    """
    from blockprune.redact import redact

    text = json.dumps(redact(json.loads(json.dumps(data, default=str))), indent=2, ensure_ascii=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


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
