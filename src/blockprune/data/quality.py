"""Find, count and handle the defects real labelled-text files have.

Each defect has a policy (``repair`` | ``drop`` | ``fail`` | ``keep``, where sensible) so a
researcher decides, in the config, what happens to their data; the ``QualityReport`` records
what was found and done so the decision is visible in the run's ``data_report.json``.

Stages, in order (the order matters: a repaired text can duplicate another one):
  1. repeated header rows          (``header_rows``)
  2. empty texts / missing labels  (``empty_texts`` / ``missing_labels``)
  3. cp866 mojibake                (``mojibake``, repaired before any comparison of texts)
  4. very long texts, texts without a letter or digit (emoji, punctuation), texts mixing
     scripts                       (count only: the model sees them as they are; truncation
                                   of long texts happens at tokenisation)
  5. texts with conflicting labels (``conflicting_labels``)
  6. exact duplicate texts         (``duplicates``)
Texts are compared after stripping leading/trailing whitespace (which the tokenizer ignores).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from blockprune.errors import ConfigError, DataError

#: Defaults a careful researcher would pick: nothing ambiguous reaches training.
DEFAULT_POLICY: dict[str, Any] = {
    "header_rows": "drop",
    "empty_texts": "drop",
    "missing_labels": "drop",
    "mojibake": "repair",
    "duplicates": "drop",  # keep the first copy of each (text, label)
    "conflicting_labels": "drop",  # drop every copy: the ground truth is ambiguous
    "cross_split_leakage": "drop",  # used by splits.check_splits
    "long_text_chars": 2000,  # threshold for the long-text count
}

ALLOWED: dict[str, tuple[str, ...]] = {
    "header_rows": ("drop", "fail"),
    "empty_texts": ("drop", "fail"),
    "missing_labels": ("drop", "fail"),
    "mojibake": ("repair", "drop", "fail", "keep"),
    "duplicates": ("drop", "fail", "keep"),
    "conflicting_labels": ("drop", "repair", "fail", "keep"),
    "cross_split_leakage": ("drop", "fail", "keep"),
}

_EXAMPLES = 5  # offending line numbers kept per defect
# cp866 renders the lead/continuation bytes of UTF-8 as Cyrillic letters and box-drawing signs.
_SUSPECT = re.compile("[\u0400-\u04ff\u2500-\u25ff]")


def resolve_policy(policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``policy``; unknown keys or values raise ConfigError naming ``data.quality.*``."""
    merged = dict(DEFAULT_POLICY)
    for key, value in dict(policy or {}).items():
        if key not in DEFAULT_POLICY:
            raise ConfigError(f"data.quality.{key}: unknown key. Allowed keys: {sorted(DEFAULT_POLICY)}.")
        if key == "long_text_chars":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.quality.long_text_chars: must be a positive integer, got {value!r}.")
        elif value not in ALLOWED[key]:
            raise ConfigError(f"data.quality.{key}: {value!r} is not allowed; use one of {list(ALLOWED[key])}.")
        merged[key] = value
    return merged


@dataclass
class QualityReport:
    """What one file contained and what cleaning did; counts are rows unless the name says texts.

    Field definitions (the SHC README's measures are reproduced by ``header_rows``,
    ``duplicate_texts``, ``conflicting_label_texts`` and ``mojibake``):

    - ``data_lines``: records read, the first header line excluded (SHC: 2,761).
    - ``header_rows``: records equal to the header (``Text,Label``) repeated inside the data.
    - ``empty_texts`` / ``missing_labels``: records (not headers) whose text / label is blank.
    - ``mojibake``: records whose text is UTF-8 bytes decoded as cp866 (``рд╕реН...``).
    - ``duplicate_texts``: the README measure: extra copies of an exact text value among all
      ``data_lines`` as read, before any cleaning (``df.Text.duplicated().sum()`` on the raw
      file), so k repeated header lines add k-1 extra copies of the text ``"Text"``.
    - ``duplicate_rows``: extra copies of a text among real rows after header/empty removal
      and mojibake repair: the copies the ``duplicates`` policy acts on.
    - ``duplicated_distinct_texts``: distinct texts (same stage) that occur more than once.
    - ``conflicting_label_texts``: distinct texts (after mojibake repair) that carry two or
      more different labels; ``conflicting_label_rows``: the rows carrying them.
    - ``long_texts``: texts longer than ``long_text_chars`` characters (count only).
    - ``no_word_texts``: texts without any letter or digit, e.g. only emoji (count only).
    - ``mixed_script_texts``: texts whose letters come from two or more scripts, e.g.
      Devanagari with Latin (count only; common in Marathi news, worth knowing).
    - ``dropped``: rows removed per policy key; ``repaired``: rows changed per policy key.
    - ``examples``: up to five 1-based file lines per defect, to find them in the file.
    """

    source: str
    data_lines: int = 0
    header_rows: int = 0
    empty_texts: int = 0
    missing_labels: int = 0
    mojibake: int = 0
    duplicate_texts: int = 0
    duplicate_rows: int = 0
    duplicated_distinct_texts: int = 0
    conflicting_label_texts: int = 0
    conflicting_label_rows: int = 0
    long_texts: int = 0
    long_text_chars: int = 2000
    no_word_texts: int = 0
    mixed_script_texts: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        return (
            f"{self.source}: {self.data_lines} lines -> {self.rows_out} rows kept "
            f"({len(self.label_counts)} labels) | header rows {self.header_rows}, empty {self.empty_texts}, "
            f"no label {self.missing_labels}, mojibake {self.mojibake}, duplicate texts {self.duplicate_texts} "
            f"(extra copies after repair {self.duplicate_rows}), conflicting-label texts "
            f"{self.conflicting_label_texts}, long {self.long_texts}, no letters {self.no_word_texts}, "
            f"mixed scripts {self.mixed_script_texts} | dropped: {drops}"
        )


def has_word_character(text: str) -> bool:
    """True if ``text`` has a letter or a digit (Unicode categories L* and N*)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def letter_scripts(text: str) -> frozenset[str]:
    """The scripts of ``text``'s letters, by the first word of their Unicode names
    (DEVANAGARI, LATIN, CJK, ...). Marks and digits do not count."""
    return frozenset(unicodedata.name(ch, "UNKNOWN").split(" ")[0] for ch in text if unicodedata.category(ch)[0] == "L")


def is_mojibake(text: str) -> bool:
    """True if ``text`` reads as UTF-8 bytes that were decoded as cp866 and repairs cleanly."""
    return repair_mojibake(text) != text


def repair_mojibake(text: str) -> str:
    """Undo a cp866 mis-decoding (``s.encode("cp866").decode("utf-8")``); other text is returned as is.

    The whole text is tried first; if it holds characters cp866 cannot encode (e.g. an emoji
    typed after the damage), each maximal run of cp866-encodable characters is repaired on
    its own. A repair counts only if the bytes are valid UTF-8 and the result has no
    cp866-looking characters (Cyrillic, box drawing) left: genuine Russian text fails this
    test and is left alone.
    """
    if not _SUSPECT.search(text):
        return text
    fixed = _try_cp866(text)
    if fixed is not None:
        return fixed
    runs, current = [], ""
    for ch in text:  # split into runs of encodable / non-encodable characters
        ok = _encodable(ch)
        if current and ok != _encodable(current[-1]):
            runs.append(current)
            current = ""
        current += ch
    runs.append(current)
    out = [(_try_cp866(r) or r) if _encodable(r[0]) else r for r in runs]
    result = "".join(out)
    return result if not _SUSPECT.search(result) else text


def _encodable(ch: str) -> bool:
    try:
        ch.encode("cp866")
        return True
    except UnicodeEncodeError:
        return False


def _try_cp866(text: str) -> str | None:
    """The cp866 repair of ``text`` if it decodes as UTF-8 and looks fixed, else None."""
    if not _SUSPECT.search(text):
        return None
    try:
        fixed = text.encode("cp866").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    if fixed == text or _SUSPECT.search(fixed):
        return None
    return fixed


def clean_records(
    df: pd.DataFrame,
    policy: Mapping[str, Any] | None = None,
    source: str = "data",
    header: tuple[str, str] | None = None,
) -> tuple[pd.DataFrame, QualityReport]:
    """Apply the policies to ``read_records`` output; return the clean rows and the report.

    ``header`` is the (text, label) column names used to spot repeated header lines;
    by default it is taken from ``df.attrs["header"]`` (set by ``read_records``) or
    ``("Text", "Label")``. ``fail`` policies raise DataError naming ``source``, the first
    offending file lines and the ``data.quality.*`` key to change. An empty result raises
    DataError as well.
    """
    pol = resolve_policy(policy)
    header = header or tuple(df.attrs.get("header", ("Text", "Label")))  # type: ignore[assignment]
    rep = QualityReport(source=source, policy=pol, long_text_chars=pol["long_text_chars"])
    work = df[["text", "label", "row"]].copy()
    work["text"] = work["text"].fillna("").astype(str)
    work["label"] = work["label"].fillna("").astype(str).str.strip()
    rep.data_lines = len(work)
    rep.duplicate_texts = int(work["text"].duplicated().sum())

    def act(key: str, mask: pd.Series, what: str, count_key: str) -> None:
        nonlocal work
        n = int(mask.sum())
        setattr(rep, count_key, n)
        if not n:
            return
        rows = work.loc[mask, "row"].head(_EXAMPLES).tolist()
        rep.examples[count_key] = rows
        if pol[key] == "fail":
            raise DataError(
                f"{source}: {n} {what}, first at line(s) {rows}. "
                f"Fix: clean the file, or set data.quality.{key} to one of "
                f"{[v for v in ALLOWED[key] if v != 'fail']}."
            )
        if pol[key] == "drop":
            rep.dropped[key] = rep.dropped.get(key, 0) + n
            work = work.loc[~mask]

    # 1. header lines repeated in the data (e.g. files concatenated with their headers)
    is_header = (work["text"].str.strip() == header[0]) & (work["label"] == header[1])
    act("header_rows", is_header, "repeated header line(s)", "header_rows")
    # 2. blanks
    act("empty_texts", work["text"].str.strip() == "", "empty or whitespace-only text(s)", "empty_texts")
    act("missing_labels", work["label"] == "", "row(s) without a label", "missing_labels")
    # 3. mojibake, before any comparison of texts
    repaired = work["text"].map(repair_mojibake)
    moj = repaired != work["text"]
    act("mojibake", moj, "mojibake text(s) (UTF-8 read as cp866)", "mojibake")
    if pol["mojibake"] == "repair" and moj.any():
        work.loc[moj, "text"] = repaired[moj]
        rep.repaired["mojibake"] = int(moj.sum())
    work["text"] = work["text"].str.strip()
    # 4. counted only: long texts, texts without letters or digits, texts mixing scripts
    words = work["text"].map(has_word_character).astype(bool)  # astype: an empty frame maps to object dtype
    scripts = work["text"].map(lambda t: len(letter_scripts(t))).astype(int)
    for name, mask in (
        ("long_texts", work["text"].str.len() > pol["long_text_chars"]),
        ("no_word_texts", ~words),
        ("mixed_script_texts", scripts > 1),
    ):
        setattr(rep, name, int(mask.sum()))
        if mask.any():
            rep.examples[name] = work.loc[mask, "row"].head(_EXAMPLES).tolist()
    # duplicates are measured before conflict handling so the count does not depend on that policy
    dup = work["text"].duplicated()
    rep.duplicate_rows = int(dup.sum())
    rep.duplicated_distinct_texts = int(work.loc[dup, "text"].nunique())
    # 5. conflicting labels
    n_labels = work.groupby("text")["label"].transform("nunique")
    conflict = n_labels > 1
    rep.conflicting_label_texts = int(work.loc[conflict, "text"].nunique())
    if pol["conflicting_labels"] == "repair":
        rep.conflicting_label_rows = int(conflict.sum())
        if conflict.any():
            rep.examples["conflicting_label_texts"] = work.loc[conflict, "row"].head(_EXAMPLES).tolist()
            lose = conflict & ~_majority_mask(work)
            rep.dropped["conflicting_labels"] = int(lose.sum())
            work = work.loc[~lose]
    else:
        act("conflicting_labels", conflict, "row(s) whose text carries different labels", "conflicting_label_rows")
        if conflict.any():
            rep.examples["conflicting_label_texts"] = rep.examples.pop("conflicting_label_rows")
    # 6. exact duplicates (same text and label; conflicting texts kept on purpose stay)
    again = work.duplicated(["text", "label"])
    if again.any():
        rows = work.loc[again, "row"].head(_EXAMPLES).tolist()
        rep.examples["duplicate_rows"] = rows
        if pol["duplicates"] == "fail":
            raise DataError(
                f"{source}: {int(again.sum())} duplicate row(s) (same text and label), first at line(s) {rows}. "
                "Fix: remove them, or set data.quality.duplicates to 'drop' (keep one copy) or 'keep'."
            )
        if pol["duplicates"] == "drop":
            rep.dropped["duplicates"] = int(again.sum())
            work = work.loc[~again]

    work = work.reset_index(drop=True)
    rep.rows_out = len(work)
    rep.label_counts = {str(k): int(v) for k, v in sorted(work["label"].value_counts().items())}
    if work.empty:
        raise DataError(
            f"{source}: nothing left after cleaning ({rep.data_lines} lines read, dropped {rep.dropped}). "
            "Fix: check data.text_column / data.label_column and the data.quality policies."
        )
    work.attrs = {"header": header, "source": source}
    return work, rep


def _majority_mask(work: pd.DataFrame) -> pd.Series:
    """Rows whose label is the single most frequent label of their text (a tie keeps none)."""
    counts = work.groupby(["text", "label"])["row"].transform("size")
    is_top = counts == counts.groupby(work["text"]).transform("max")
    n_top_labels = work.loc[is_top].groupby("text")["label"].nunique()
    return is_top & (work["text"].map(n_top_labels) == 1)
