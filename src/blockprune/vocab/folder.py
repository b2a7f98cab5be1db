"""Folder to folder (the ``blockprune trim-vocab`` command): load, trim, save, check the reload.

The model is loaded as the class its config names (its head is kept), trimmed in float32 and
saved in the dtype it was stored in; corpus files are read by the project's one data reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from blockprune.atomic import MODEL_KIND, atomic_path, check_output
from blockprune.data.reading import read_texts
from blockprune.errors import BlockpruneError, ConfigError
from blockprune.models import save_tokenizer
from blockprune.vocab.corpus import changed_tokenization_rate, unk_rate
from blockprune.vocab.trim import trim_vocabulary


def read_text_column(path: str | os.PathLike, text_column: str = "Text") -> list[str]:
    """The non-blank texts of one .csv / .tsv / .jsonl / .txt file (repeated header rows dropped)."""
    return read_texts(path, text_column)


def _load_model(model_dir: str | os.PathLike):
    """The checkpoint's own class (keeps any head: classifier, MLM), in float32."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    saved_dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    cls = None
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            break
    model = (cls or AutoModel).from_pretrained(model_dir, dtype=torch.float32)
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, None)
    return model, saved_dtype


def trim_vocabulary_folder(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    corpus_files: list[str],
    text_column: str = "Text",
    heldout_files: Sequence[str] = (),
    keep_script_chars: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trim the model in ``model_dir`` on the texts of ``corpus_files``; write it to ``out_dir``.

    ``out_dir`` is written atomically: a temporary sibling folder, renamed at the end. Returns
    the stats (also written to ``out_dir/vocab_trim.json``), with the unknown-token rate and the
    fraction of texts split differently on ``heldout_files``.
    """
    from transformers import AutoTokenizer

    src, dst = Path(model_dir).resolve(), Path(out_dir).resolve()
    if dst == src or src.is_relative_to(dst):
        raise ConfigError(f"out_dir {out_dir} would replace the model folder {model_dir}; choose another folder")
    check_output(out_dir, MODEL_KIND, overwrite)  # before the work: a folder we did not write is never replaced
    if not corpus_files:
        raise ConfigError("corpus_files is empty; give the training files whose texts the vocabulary must cover")
    texts = [t for f in corpus_files for t in read_text_column(f, text_column)]
    heldout = [t for f in heldout_files for t in read_text_column(f, text_column)]

    original = AutoTokenizer.from_pretrained(model_dir)  # trim_vocabulary returns a new tokenizer
    model, saved_dtype = _load_model(model_dir)
    model, new_tokenizer, stats = trim_vocabulary(model, original, texts, keep_script_chars=keep_script_chars)

    result = stats.to_dict()
    result.update(
        model_dir=str(model_dir),
        out_dir=str(out_dir),
        corpus_files=[str(f) for f in corpus_files],
        heldout_files=[str(f) for f in heldout_files],
        keep_script_chars=keep_script_chars,
        saved_dtype=str(saved_dtype or torch.float32).replace("torch.", ""),
    )
    if heldout:
        result["heldout_texts"] = len(heldout)
        result["heldout_unk_rate_before"] = unk_rate(original, heldout)
        result["heldout_unk_rate"] = unk_rate(new_tokenizer, heldout)
        result["heldout_changed_tokenization_rate"] = changed_tokenization_rate(original, new_tokenizer, heldout)

    if isinstance(saved_dtype, torch.dtype) and saved_dtype in (torch.float16, torch.bfloat16):
        model = model.to(saved_dtype)  # rows were copied, so this is lossless
    with atomic_path(out_dir, kind=MODEL_KIND, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(new_tokenizer, tmp)
        check = AutoTokenizer.from_pretrained(tmp)
        sample = texts[:256]
        if check(sample)["input_ids"] != new_tokenizer(sample)["input_ids"]:
            raise BlockpruneError(
                f"internal error: the saved tokenizer in {out_dir} does not reload to the trimmed one"
            )
        (tmp / "vocab_trim.json").write_text(
            json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    return result
