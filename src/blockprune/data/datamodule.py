"""Lightning DataModule: files -> cleaned, split, tokenised, dynamically padded batches.

All checks (config, files, quality policies, splits, labels) run before anything is written,
so a bad input never leaves a half-made report or cache behind. Labels are indexed from the
training split in sorted order so ``label2id`` is stable across runs and machines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from blockprune.atomic import write_json
from blockprune.data import download
from blockprune.data.buckets import LengthBucketBatchSampler
from blockprune.data.quality import QualityReport, clean_records, resolve_policy
from blockprune.data.reading import read_records
from blockprune.data.splits import SPLITS, check_splits, cv_split, example_ids, split_records
from blockprune.data.tokens import length_stats, load_or_encode
from blockprune.errors import ConfigError, DataError

log = logging.getLogger(__name__)
_UNKNOWN_MAX = 10**9  # transformers uses ~1e30 when a tokenizer's limit is unknown


def _plain(value: Any) -> Any:
    """OmegaConf containers (what Hydra passes) as plain dicts/lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def default_num_workers() -> int:
    """min(4, cores - 1), and 0 on 1-2 cores.

    Batches are pre-tokenised, so a worker only pads a few lists; on a small machine the
    extra processes would take cores from the training loop itself.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(4, cores - 1)


class _Encoded(Dataset):
    """One split: flat token ids sliced per example, and its label ids."""

    def __init__(self, enc: Mapping[str, torch.Tensor], labels: Sequence[int]) -> None:
        self.ids = enc["input_ids"].tolist()
        self.offsets = enc["offsets"].tolist()
        self.types = enc["token_type_ids"].tolist() if "token_type_ids" in enc else None
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        return [b - a for a, b in zip(self.offsets, self.offsets[1:])]

    def __getitem__(self, i: int) -> dict[str, Any]:
        a, b = self.offsets[i], self.offsets[i + 1]
        item: dict[str, Any] = {"input_ids": self.ids[a:b], "attention_mask": [1] * (b - a), "labels": self.labels[i]}
        if self.types is not None:
            item["token_type_ids"] = self.types[a:b]
        return item


class _Collate:
    """DataCollatorWithPadding, returning a plain dict (pickles for worker processes)."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return dict(self.inner(features))


class TextClassificationDataModule(LightningDataModule):
    """Text classification data from one file (split here) or from train/val/test files.

    Args mirror the ``data`` config group; see ``conf/data``. ``limit`` caps rows per split
    (a seeded, label-proportional sample) for quick runs; ``label2id`` is still built from
    the full training split so the model's output size does not depend on it.

    Each of ``file``/``train_file``/``val_file``/``test_file`` is a local path (used as is) or
    a remote spec ``{url: ..., sha256: ...}``, downloaded once into ``download_dir`` and
    verified (``blockprune.data.download``) when the data is first prepared.

    ``cv_folds=K`` pools all given rows (``file``, or the train/val/test files together) and
    serves CV fold ``cv_fold`` (0..K-1) as the test split, with validation taken from the other
    folds (the ``split`` ratio of train to val); ``blockprune.crossval`` runs the K fits.
    """

    def __init__(
        self,
        tokenizer: str,
        file: str | Mapping[str, Any] | None = None,
        train_file: str | Mapping[str, Any] | None = None,
        val_file: str | Mapping[str, Any] | None = None,
        test_file: str | Mapping[str, Any] | None = None,
        text_column: str = "Text",
        label_column: str = "Label",
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 42,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        quality: Mapping[str, Any] | None = None,
        limit: Mapping[str, int] | None = None,
        output_dir: str | None = None,
        cache_dir: str | None = None,
        download_dir: str | None = None,
        cv_folds: int | None = None,
        cv_fold: int | None = None,
        bucket_by_length: bool = False,
    ) -> None:
        super().__init__()
        self.tokenizer_name = str(tokenizer)
        self.file = _plain(file)
        self.files = {"train": _plain(train_file), "val": _plain(val_file), "test": _plain(test_file)}
        self.download_dir = download_dir
        self.text_column = text_column
        self.label_column = label_column
        self.split_fractions = [float(x) for x in _plain(split)]
        self.seed = int(seed)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size else self.batch_size
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.quality = resolve_policy(_plain(quality))
        self.limit = dict(_plain(limit) or {})
        self.output_dir = output_dir
        self.cache_dir = cache_dir
        self.cv_folds = cv_folds
        self.cv_fold = 0 if cv_fold is None else cv_fold
        self.bucket_by_length = bool(bucket_by_length)
        self._validate_args()
        self._tokenizer: Any = None
        self._prepared = False
        self._frames: dict[str, pd.DataFrame] = {}
        self._datasets: dict[str, _Encoded] = {}
        self._label2id: dict[str, int] = {}
        self._report: dict[str, Any] = {}

    # ----------------------------------------------------------------- config checks
    def _validate_args(self) -> None:
        if self.file and any(self.files.values()):
            raise ConfigError(
                "data.file and data.train_file/val_file/test_file are both set. Fix: set only one of them."
            )
        if not self.file and not (self.files["train"] and self.files["val"]):
            raise ConfigError(
                "no data given. Fix: set data.file (split inside) or data.train_file and data.val_file "
                "(data.test_file optional)."
            )
        for key, value, low in (
            ("max_length", self.max_length, 2),
            ("batch_size", self.batch_size, 1),
            ("eval_batch_size", self.eval_batch_size, 1),
            ("num_workers", self.num_workers, 0),
        ):
            if value < low:
                raise ConfigError(f"data.{key}: must be >= {low}, got {value}.")
        for key, value in self.limit.items():
            if key not in SPLITS:
                raise ConfigError(f"data.limit.{key}: unknown split; use keys {list(SPLITS)}.")
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"data.limit.{key}: must be a positive integer or null, got {value!r}.")
        if self.cv_folds is not None and self.limit.get("test"):
            raise ConfigError(
                "data.limit.test cannot be combined with data.cv_folds: cross-validation tests every example "
                "once. Fix: drop data.limit.test (data.limit.train/val still apply)."
            )
        # remote specs ({url, sha256}) are checked here, before any network use
        self.remote = {
            key: download.check_spec(f"data.{key}", value)
            for key, value in self._file_keys()
            if download.is_remote(value)
        }

    def _file_keys(self) -> list[tuple[str, Any]]:
        return [("file", self.file)] + [(f"{s}_file", self.files[s]) for s in SPLITS]

    def _download(self) -> None:
        """Replace remote specs by the local paths of their verified downloads (plain paths stay)."""
        for key, spec in self.remote.items():
            path = str(download.fetch(**spec, cache_dir=self.download_dir or download.DEFAULT_CACHE, key=f"data.{key}"))
            if key == "file":
                self.file = path
            else:
                self.files[key.removesuffix("_file")] = path

    @property
    def tokenizer(self) -> Any:
        """The HF tokenizer (loaded on first use); ConfigError if it cannot be loaded."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from blockprune.models import hub_kwargs

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name, **hub_kwargs(self.tokenizer_name))
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"data.tokenizer: cannot load {self.tokenizer_name!r} ({err}). "
                    "Fix: give a local folder with tokenizer files or a hub id reachable from this machine."
                ) from None
            self._check_max_length(self._tokenizer)
        return self._tokenizer

    def _check_max_length(self, tok: Any) -> None:
        limit = getattr(tok, "model_max_length", None)
        if isinstance(limit, int) and limit < _UNKNOWN_MAX and self.max_length > limit:
            raise ConfigError(
                f"data.max_length={self.max_length} exceeds the tokenizer's model_max_length={limit} "
                f"({self.tokenizer_name}). Fix: set data.max_length <= {limit}."
            )

    # ----------------------------------------------------------------- lightning hooks
    def prepare_data(self) -> None:
        """Read, clean, split and tokenise (writing the cache and report); safe to call again."""
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        """Same work as ``prepare_data`` (runs on every process); idempotent across stages."""
        self._prepare()

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----------------------------------------------------------------- public views
    @property
    def label2id(self) -> dict[str, int]:
        self._prepare()
        return dict(self._label2id)

    @property
    def id2label(self) -> dict[int, str]:
        self._prepare()
        return {i: label for label, i in self._label2id.items()}

    @property
    def num_labels(self) -> int:
        self._prepare()
        return len(self._label2id)

    @property
    def report(self) -> dict[str, Any]:
        """Quality per source, split sizes, label counts, leakage, token length stats."""
        self._prepare()
        return self._report

    def texts(self, split: str) -> list[str]:
        """Cleaned texts of ``split`` in dataset order (after ``limit``)."""
        self._prepare()
        return self._frame(split)["text"].tolist()

    def example_ids(self, split: str) -> list[str]:
        """Stable ids of ``split``'s examples in dataset order (a hash of the text), to pair the
        predictions of two jobs on the same data example by example."""
        return example_ids(self.texts(split))

    def labels(self, split: str) -> list[int]:
        """Label ids of ``split`` in dataset order."""
        self._prepare()
        return [self._label2id[x] for x in self._frame(split)["label"]]

    # ----------------------------------------------------------------- internals
    def _frame(self, split: str) -> pd.DataFrame:
        if split not in self._frames:
            raise ConfigError(f"unknown split {split!r}; use one of {list(SPLITS)}.")
        return self._frames[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self._prepare()
        ds = self._datasets[split]
        if len(ds) == 0:
            key = "data.test_file" if split == "test" and not self.file else "data.split"
            raise ConfigError(f"the {split} split is empty. Fix: set {key} so that it gets rows.")
        gen = torch.Generator().manual_seed(self.seed) if shuffle else None
        if shuffle and self.bucket_by_length:
            batching = {"batch_sampler": LengthBucketBatchSampler(ds.lengths(), self.batch_size, gen)}
        else:
            batching = {
                "batch_size": self.batch_size if split == "train" else self.eval_batch_size,
                "shuffle": shuffle,
                "sampler": None if shuffle else _eval_sampler(ds),
            }
        return DataLoader(
            ds,
            **batching,
            generator=gen,
            collate_fn=_Collate(self.tokenizer),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _read_and_split(
        self,
    ) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, int], dict[str, QualityReport]]:
        """Cleaned splits, quality report per source, leakage counts. Raises before any write."""
        kw = dict(text_column=self.text_column, label_column=self.label_column)
        reports: dict[str, QualityReport] = {}
        if self.cv_folds is not None:
            return self._read_and_fold(kw, reports)
        if self.file:
            name = str(self.file)
            frame, reports[name] = clean_records(read_records(self.file, **kw), self.quality, name)
            splits = split_records(frame, self.split_fractions, self.seed, source=name)
            names = {s: f"{name} ({s} split)" for s in SPLITS}
        else:
            splits, names = {}, {}
            for s, path in self.files.items():
                if path is None:
                    continue
                names[s] = str(path)
                splits[s], reports[str(path)] = clean_records(read_records(path, **kw), self.quality, str(path))
            splits.setdefault("test", splits["train"].iloc[0:0])
        splits, leakage = check_splits(splits, names, self.quality["cross_split_leakage"])
        for s in ("train", "val"):
            if splits[s].empty:
                raise DataError(
                    f"{names[s]}: no rows left for {s} (after leakage removal). Fix: add data or adjust data.split."
                )
        return splits, {k: r.to_dict() for k, r in reports.items()}, leakage, reports

    def _read_and_fold(
        self, kw: dict[str, str], reports: dict[str, QualityReport]
    ) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, int], dict[str, QualityReport]]:
        """Cleaned rows of every given file pooled, then split into this CV fold's train/val/test."""
        sources = [self.file] if self.file else [f for f in self.files.values() if f is not None]
        frames = []
        for path in sources:
            frame, reports[str(path)] = clean_records(read_records(path, **kw), self.quality, str(path))
            frames.append(frame)
        name = " + ".join(map(str, sources))
        pooled = pd.concat(frames, ignore_index=True)
        train, val = self.split_fractions[:2]
        splits = cv_split(pooled, self.cv_folds, self.cv_fold, val / (train + val), self.seed, source=name)
        names = {s: f"{name} (CV fold {self.cv_fold}, {s})" for s in SPLITS}
        splits, leakage = check_splits(splits, names, self.quality["cross_split_leakage"])
        return splits, {k: r.to_dict() for k, r in reports.items()}, leakage, reports

    def _limited(self, split: str, frame: pd.DataFrame) -> pd.DataFrame:
        """A seeded, label-proportional sample of at most ``limit[split]`` rows, in file order."""
        cap = self.limit.get(split)
        if not cap or len(frame) <= cap:
            return frame
        rng = np.random.default_rng(self.seed)
        shuffled = frame.iloc[rng.permutation(len(frame))]
        rank = shuffled.groupby("label").cumcount()
        size = shuffled.groupby("label")["label"].transform("size")
        order = ((rank + 0.5) / size).to_numpy()
        picked = shuffled.iloc[np.argsort(order, kind="stable")[:cap]]
        return picked.sort_values("row").reset_index(drop=True)

    def _prepare(self) -> None:
        if self._prepared:
            return
        tok = self.tokenizer  # checks data.tokenizer and data.max_length first
        self._download()
        splits, quality, leakage, reports = self._read_and_split()
        labels = sorted(splits["train"]["label"].unique())
        if len(labels) < 2:
            raise DataError(
                f"{self.file or self.files['train']}: the training data has {len(labels)} label(s) {labels}; "
                "classification needs at least 2. Fix: check data.label_column."
            )
        label2id = {label: i for i, label in enumerate(labels)}
        frames = {s: self._limited(s, splits[s]) for s in SPLITS}
        encoded, cache = load_or_encode(
            tok, {s: frames[s]["text"].tolist() for s in SPLITS}, self.max_length, self.cache_dir
        )
        self._datasets = {s: _Encoded(encoded[s], [label2id[x] for x in frames[s]["label"]]) for s in SPLITS}
        self._frames, self._label2id = frames, label2id
        self._report = {
            "tokenizer": self.tokenizer_name,
            "max_length": self.max_length,
            "seed": self.seed,
            "source": {"file": self.file} if self.file else {"files": self.files},
            "remote": self.remote or None,
            "split_fractions": self.split_fractions if self.file or self.cv_folds else None,
            "cv": {"folds": self.cv_folds, "fold": self.cv_fold} if self.cv_folds else None,
            "quality_policy": self.quality,
            "quality": quality,
            "split_sizes": {s: len(frames[s]) for s in SPLITS},
            "split_sizes_before_limit": {s: len(splits[s]) for s in SPLITS},
            "limit": self.limit or None,
            "label2id": label2id,
            "label_counts": {
                s: {k: int(v) for k, v in sorted(frames[s]["label"].value_counts().items())} for s in SPLITS
            },
            "leakage": leakage,
            "tokens": {s: length_stats(encoded[s]["full_lengths"], self.max_length) for s in SPLITS},
            "cache": cache,
        }
        self._prepared = True
        for r in reports.values():
            log.info("data quality: %s", r.summary())
        log.info(
            "data splits: %s; %d labels; leakage %s; tokens p95 %s, truncated %s",
            self._report["split_sizes"],
            len(label2id),
            leakage or "none",
            {s: t.get("p95") for s, t in self._report["tokens"].items()},
            {s: t.get("truncated_fraction") for s, t in self._report["tokens"].items()},
        )
        if self.output_dir:
            path = Path(self.output_dir) / "data_report.json"
            write_json(path, self._report)
            log.info("data report written: %s", path)


def _eval_sampler(dataset: Any) -> Any:
    """Under DDP, each rank evaluates its own share and no example twice: Lightning's default
    sampler pads the last shares with repeated examples, which would shift test metrics."""
    if not (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    ):
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)
