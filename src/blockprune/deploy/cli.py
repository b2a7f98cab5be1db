"""The ``export`` and ``predict`` commands' bodies (arguments are parsed in ``blockprune.cli``)."""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from blockprune.atomic import atomic_path, check_output
from blockprune.deploy.inference import max_length_of
from blockprune.deploy.measure import deploy_job
from blockprune.deploy.predict import predict_file, read_texts
from blockprune.errors import DataError

#: Timing length without texts to take it from (a short news headline in tokens).
DEFAULT_SEQ_LEN = 40


def _labels(path: str, text_column: str, label_column: str, label2id: dict[str, int]) -> tuple[list[str], list[int]]:
    from blockprune.data.reading import read_records

    df = read_records(path, text_column=text_column, label_column=label_column)
    unknown = sorted(set(df["label"]) - set(label2id))
    if unknown:
        raise DataError(
            f"{path}: labels {unknown[:5]} are not among the model's {sorted(label2id)}. "
            f"Fix: give texts labelled with the model's label set (or leave out --label-column)."
        )
    return df["text"].tolist(), [label2id[x] for x in df["label"]]


def export_folder(model: Any, tokenizer: Any, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export into ``model_dir``, re-test on ``--texts`` (or random inputs), time, write deploy.json."""
    texts: list[str] = []
    labels = None
    if args.texts and args.label_column:
        texts, labels = _labels(args.texts, args.text_column, args.label_column, dict(model.config.label2id))
    elif args.texts:
        texts, _ = read_texts(args.texts, args.text_column)
    max_length = max_length_of(model_dir, tokenizer)
    seq_len = args.seq_len
    if seq_len is None:
        if texts:
            lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            seq_len = int(min(max_length, math.ceil(np.percentile(lengths, 95))))
        else:
            seq_len = min(DEFAULT_SEQ_LEN, max_length)
    return deploy_job(
        model,
        tokenizer,
        model_dir,
        None,
        texts,
        labels,
        args.runtime,
        seq_len=seq_len,
        max_length=max_length,
        repeats=args.repeats,
        threads=args.threads,
        max_accuracy_drop=args.max_accuracy_drop,
        int8={"per_channel": not args.per_tensor},
        calibration_texts=read_texts(args.calibration, args.text_column)[0] if args.calibration else (),
        overwrite=args.overwrite,
    )


def predict_command(model_dir: Path, args: argparse.Namespace) -> int:
    out_format = args.output_format or ("csv" if args.out and args.out.lower().endswith(".csv") else "jsonl")
    kwargs = dict(
        text_column=args.text_column,
        fmt=args.format,
        out_format=out_format,
        runtime=args.runtime,
        batch_size=args.batch_size,
        threads=args.threads,
        with_text=args.with_text,
        progress=not args.no_progress,
    )
    if args.out:
        check_output(args.out)  # an existing folder at --out is refused before the work, never replaced
        buffer = io.StringIO(newline="")  # nothing is written when the input turns out bad
        runtime = predict_file(model_dir, args.input, buffer, **kwargs)
        with atomic_path(args.out) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        print(f"wrote {args.out} (runtime: {runtime})", file=sys.stderr)
    else:
        predict_file(model_dir, args.input, sys.stdout, **kwargs)
    return 0
