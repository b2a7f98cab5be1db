"""Stratified, seeded, text-grouped train/val/test splits, K-fold CV splits, and checks on
given split files.

Scores on a test set are only honest if no test text was seen in training and every test
label can be predicted, so splitting groups rows by text and the checks enforce both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from blockprune.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or fr[0] <= 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(
            f"data.split: {list(fractions)} is not valid; give three non-negative fractions "
            "(train, val, test) summing to 1 with train > 0, e.g. [0.8, 0.1, 0.1]."
        )
    return fr


def _allocate(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` into per-split counts: largest remainder, then at least one per used split."""
    exact = [n * f for f in fractions]
    counts = [int(np.floor(x)) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):  # every used split sees every class
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _text_groups(df: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct text with its label: the most frequent (only differs if conflicting labels were kept)."""
    return (
        df.groupby(["text", "label"])
        .size()
        .reset_index(name="n")
        .sort_values(["text", "n", "label"], ascending=[True, False, True])
        .drop_duplicates("text")
    )


def split_records(
    df: pd.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42, source: str = "data"
) -> dict[str, pd.DataFrame]:
    """Split cleaned rows into ``train``/``val``/``test``, stratified by label and grouped by text.

    All rows sharing a text go to the same split (after cleaning there is one per text, but
    this holds for any input). Per label, its texts are shuffled with ``seed`` (after sorting,
    so the result does not depend on the row order) and cut by largest remainder, so each
    split's count per label is within one of ``fraction * count`` (a split with a non-zero
    fraction gets at least one text of every label, which may move a tiny class further).
    A label with fewer texts than non-empty splits raises DataError. Rows keep file order.
    """
    fr = _check_fractions(fractions)
    used = sum(f > 0 for f in fr)
    groups = _text_groups(df)
    assignment: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for label, texts in groups.groupby("label", sort=True)["text"]:
        items = sorted(texts.tolist())
        if len(items) < used:
            raise DataError(
                f"{source}: label {label!r} has {len(items)} distinct text(s), fewer than the {used} splits "
                "it must be stratified into. Fix: drop that label from the file, add examples, or give "
                "data.train_file / data.val_file / data.test_file instead of data.file."
            )
        perm = rng.permutation(len(items))
        counts = _allocate(len(items), fr)
        start = 0
        for name, c in zip(SPLITS, counts):
            for k in perm[start : start + c]:
                assignment[items[k]] = name
            start += c
    which = df["text"].map(assignment)
    return {name: df.loc[which == name].sort_values("row").reset_index(drop=True) for name in SPLITS}


def example_ids(texts: Sequence[str]) -> list[str]:
    """A stable id per example: a hash of its cleaned text (``#2``, ``#3`` for repeats).

    Two jobs on the same data give an example the same id whatever the split, fold or row
    order, so their test predictions can be paired example by example.
    """
    seen: dict[str, int] = {}
    ids = []
    for text in texts:
        key = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return ids


def assign_folds(df: pd.DataFrame, folds: int, seed: int = 42, source: str = "data") -> np.ndarray:
    """The CV fold (0..folds-1) of every row, stratified by label and grouped by text.

    Per label (sorted), its distinct texts (sorted, then shuffled with ``seed``) are dealt to the
    folds in turn, continuing where the previous label stopped, so each fold's count per label
    is within one of ``count / folds`` and fold sizes differ by at most one text. The folds
    depend only on the texts, labels and seed: every job of a study gets the same folds.
    """
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"data.cv_folds: must be an integer >= 2 (or null for no cross-validation), got {folds!r}.")
    groups = _text_groups(df)
    if len(groups) < folds:
        raise DataError(
            f"{source}: {len(groups)} distinct text(s), fewer than data.cv_folds={folds}. Fix: lower data.cv_folds."
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    start = 0
    for _, texts in groups.groupby("label", sort=True)["text"]:
        items = sorted(texts.tolist())
        for i, k in enumerate(rng.permutation(len(items))):
            fold_of[items[k]] = (start + i) % folds
        start += len(items)
    return df["text"].map(fold_of).to_numpy()


def cv_split(
    df: pd.DataFrame, folds: int, fold: int, val_fraction: float, seed: int = 42, source: str = "data"
) -> dict[str, pd.DataFrame]:
    """Train/val/test of one CV fold: test is fold ``fold``; validation is a stratified, grouped
    ``val_fraction`` of the other folds (the rest trains). Rows keep the order of ``df``."""
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"data.cv_fold: must be in 0..{folds - 1} for data.cv_folds={folds}, got {fold!r}.")
    if not 0 < val_fraction < 1:
        raise ConfigError(
            f"data.split: the validation share of the training folds must be in (0, 1), got {val_fraction}; "
            "give data.split with train > 0 and val > 0, e.g. [0.8, 0.1, 0.1]."
        )
    df = df.reset_index(drop=True)
    which = assign_folds(df, folds, seed, source)
    test, rest = df.loc[which == fold], df.loc[which != fold]
    small = rest.groupby("label")["text"].nunique()
    small = small[small < 2]
    missing = sorted(set(df["label"]) - set(rest["label"]))
    if len(small) or missing:
        label = (missing or small.index.tolist())[0]
        raise DataError(
            f"{source}: label {label!r} has too few distinct texts outside CV fold {fold} (needs 2: train and "
            f"validation). Fix: lower data.cv_folds, add examples of {label!r}, or drop that label."
        )
    parts = split_records(
        rest.assign(_order=np.arange(len(rest))),
        (1 - val_fraction, val_fraction, 0.0),
        seed,
        source=f"{source} (CV fold {fold})",
    )
    out = {s: df.loc[rest.index[parts[s]["_order"].to_numpy()]] for s in ("train", "val")}
    out["test"] = test
    return {s: out[s].sort_index().reset_index(drop=True) for s in SPLITS}


def check_splits(
    splits: Mapping[str, pd.DataFrame],
    source_names: Mapping[str, str],
    leakage: str = "drop",
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Check given splits; return them with leaked texts handled, and the leakage counts.

    Leakage: a val text also in train, or a test text also in train or val, is counted (rows,
    key ``"val&train"`` etc.) and, with ``leakage="drop"`` (policy key
    ``data.quality.cross_split_leakage``), removed from the later split; ``"fail"`` raises
    DataError, ``"keep"`` only counts. Then every label of val/test must occur in train
    (a model cannot predict a class it has no output for): otherwise DataError naming the
    file, the label and its first line.
    """
    if leakage not in ("drop", "keep", "fail"):
        raise ConfigError(
            f"data.quality.cross_split_leakage: {leakage!r} is not allowed; use one of ['drop', 'fail', 'keep']."
        )
    out = {k: v for k, v in splits.items()}
    counts: dict[str, int] = {}
    order = [s for s in SPLITS if s in out] + [s for s in out if s not in SPLITS]
    for i, later in enumerate(order):
        for earlier in order[:i]:
            shared = out[later]["text"].isin(set(out[earlier]["text"]))
            n = int(shared.sum())
            counts[f"{later}&{earlier}"] = n
            if not n:
                continue
            if leakage == "fail":
                rows = out[later].loc[shared, "row"].head(5).tolist()
                raise DataError(
                    f"{source_names.get(later, later)}: {n} row(s) whose text is also in "
                    f"{source_names.get(earlier, earlier)}, first at line(s) {rows}. Fix: remove them, or set "
                    "data.quality.cross_split_leakage to 'drop' (remove from the later split) or 'keep'."
                )
            if leakage == "drop":
                out[later] = out[later].loc[~shared].reset_index(drop=True)
    train_labels = set(out["train"]["label"])
    for name in order:
        if name == "train":
            continue
        missing = out[name].loc[~out[name]["label"].isin(train_labels)]
        if len(missing):
            label = missing["label"].iloc[0]
            row = int(missing["row"].iloc[0])
            raise DataError(
                f"{source_names.get(name, name)}: line {row}: label {label!r} does not occur in the training data "
                f"({source_names.get('train', 'train')}). Fix: add {label!r} examples to the training file or "
                "remove that label from the evaluation file."
            )
    return out, counts
