"""Teacher-labelled augmentation: extra examples the student learns from the teacher alone.

Distillation transfers more when the student sees the teacher's outputs on more inputs than
the labelled ones (TinyBERT's augmentation; "dark knowledge" on unlabelled text). Two sources:

- perturbed copies of each training batch: whole words masked, deleted or swapped with their
  neighbour (words are recognised from the tokenizer's pieces, so no re-tokenisation);
- unlabelled texts the user gives (``distill.unlabelled_files``), cycled in batches.

Their only target is the teacher's distribution (KL, no cross-entropy): the perturbed text may
no longer carry its label, and unlabelled text has none.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from blockprune.errors import ConfigError


@dataclass(frozen=True)
class Perturbation:
    """Per-word probabilities: swap with the next word, delete, replace every piece by the mask token."""

    swap: float = 0.1
    delete: float = 0.1
    mask: float = 0.1

    def __post_init__(self) -> None:
        for name in ("swap", "delete", "mask"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"distill.augment.{name}={value} must be a probability in [0, 1].")


def word_starts(tokenizer: Any) -> list[bool]:
    """For every vocabulary id, whether its piece begins a word: SentencePiece marks starts
    with '▁', WordPiece marks continuations with '##'."""
    vocab = tokenizer.get_vocab()
    pieces = [""] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        pieces[i] = piece
    sentencepiece = any(p.startswith("▁") for p in pieces)
    return [p.startswith("▁") if sentencepiece else not p.startswith("##") for p in pieces]


def split_words(ids: Sequence[int], starts: Sequence[bool], special: set[int]) -> list[list[int]]:
    """Group piece ids into words; a special token is a word of its own (and never perturbed)."""
    words: list[list[int]] = []
    for i in ids:
        if i in special or not words or starts[i] or words[-1][0] in special:
            words.append([i])
        else:
            words[-1].append(i)
    return words


def perturb(
    ids: Sequence[int], starts: Sequence[bool], special: set[int], mask_id: int, p: Perturbation, rng: random.Random
) -> list[int]:
    """One perturbed copy of a piece sequence: swaps first (a word moves at most one place),
    then deletions, then masking; special tokens stay where they are. If every word would be
    deleted, the copy keeps them (an empty text teaches nothing)."""
    words = split_words(ids, starts, special)
    i = 0
    while i < len(words) - 1:
        a, b = words[i], words[i + 1]
        if a[0] not in special and b[0] not in special and rng.random() < p.swap:
            words[i], words[i + 1] = b, a
            i += 2
        else:
            i += 1
    kept = [w for w in words if w[0] in special or not rng.random() < p.delete]
    if all(w[0] in special for w in kept):
        kept = words
    out: list[int] = []
    for w in kept:
        masked = w[0] not in special and rng.random() < p.mask
        out.extend([mask_id] * len(w) if masked else w)
    return out


def pad(sequences: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for piece sequences of any lengths."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


class TeacherAugmentation:
    """Builds the extra, teacher-labelled inputs of every training step.

    ``copies`` perturbed copies of each batch text, plus one batch of ``batch_size`` unlabelled
    texts (cycled in a seeded order) when files are given. The random generator is seeded from
    ``seed`` and the global step, so a resumed job perturbs the same way it would have.
    """

    def __init__(
        self,
        copies: int = 0,
        perturbation: Perturbation | None = None,
        unlabelled_texts: Sequence[str] = (),
        batch_size: int = 32,
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        if copies < 0 or batch_size < 1:
            raise ConfigError(f"distill.augment.copies={copies} must be >= 0 and the unlabelled batch size >= 1.")
        self.copies = copies
        self.perturbation = perturbation or Perturbation()
        self.texts = [t for t in unlabelled_texts if t.strip()]
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self._tokenizer: Any = None
        self._starts: list[bool] = []
        self._special: set[int] = set()
        self._encoded: list[list[int]] = []

    @property
    def enabled(self) -> bool:
        return self.copies > 0 or bool(self.texts)

    def setup(self, tokenizer: Any) -> None:
        """Learn the tokenizer's word starts, special and mask ids; tokenise the unlabelled texts once."""
        if self.copies > 0 and self.perturbation.mask > 0 and tokenizer.mask_token_id is None:
            raise ConfigError(
                "distill.augment.mask > 0 needs a tokenizer with a mask token; set distill.augment.mask=0."
            )
        self._tokenizer = tokenizer
        self._starts = word_starts(tokenizer)
        self._special = set(tokenizer.all_special_ids)
        if self.texts:
            enc = tokenizer(self.texts, truncation=True, max_length=self.max_length)
            self._encoded = [list(ids) for ids in enc["input_ids"]]

    def _unlabelled(self, step: int) -> list[list[int]]:
        """Texts step*batch_size ... of an endless sequence of passes, each pass in its own seeded order."""
        n, out, orders = len(self._encoded), [], {}
        for g in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, pos = divmod(g, n)
            if epoch not in orders:
                orders[epoch] = list(range(n))
                random.Random(self.seed + epoch).shuffle(orders[epoch])
            out.append(self._encoded[orders[epoch][pos]])
        return out

    def extra_inputs(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor] | None:
        """The padded extra inputs for this step, on the batch's device; None when augmentation is off."""
        if not self.enabled:
            return None
        if self._tokenizer is None:
            raise RuntimeError("TeacherAugmentation.setup(tokenizer) must run before training")
        rng = random.Random(self.seed * 1_000_003 + step)
        sequences: list[list[int]] = []
        ids, mask = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
        for _ in range(self.copies):
            for row, row_mask in zip(ids, mask):
                real = [i for i, m in zip(row, row_mask) if m]
                sequences.append(perturb(real, self._starts, self._special, self._mask_id, self.perturbation, rng))
        if self._encoded:
            sequences.extend(self._unlabelled(step))
        return pad(sequences, self._tokenizer.pad_token_id or 0, batch["input_ids"].device)

    @property
    def _mask_id(self) -> int:
        mask_id = self._tokenizer.mask_token_id
        return self._tokenizer.unk_token_id if mask_id is None else mask_id
