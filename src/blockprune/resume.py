"""Resume a killed job exactly: what Lightning's checkpoint lacks, and where to find the checkpoint.

``trainer.fit(ckpt_path=...)`` restores the weights (mask scores and the sparsity buffers
included), the optimiser, the LR scheduler, the loops' counters (the pruning schedule follows
``global_step``) and the callbacks' states (best checkpoint so far). It does not restore the
random number generators (dropout) nor the order of the training batches: resumed mid-epoch,
Lightning iterates a fresh loader from its first batch, and the loader's shuffling generator
starts from its seed again. ``ResumableTraining`` adds both, so a resumed job takes exactly
the steps the uninterrupted job would have taken.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from blockprune.errors import ConfigError

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"


def find_checkpoint(resume: bool | str, checkpoint_dir: Path | None) -> Path | None:
    """The checkpoint a job continues from, by the ``resume`` setting.

    ``auto`` (default): ``<checkpoint_dir>/last.ckpt`` when it exists, else a fresh start;
    ``true``: that file must exist; ``false``: always a fresh start; any other string: the
    path of a checkpoint to continue from, or of the job folder whose ``checkpoints/last.ckpt``
    to continue from (the job then writes into its own, new folder).
    """
    if resume is False or resume is None:
        return None
    last = checkpoint_dir / LAST_CHECKPOINT if checkpoint_dir is not None else None
    if resume == "auto":
        return last if last is not None and last.is_file() else None
    if resume is True:
        if last is None or not last.is_file():
            raise ConfigError(
                f"resume=true but there is no {last or LAST_CHECKPOINT} to continue from. Re-run the killed job's "
                "command with hydra.run.dir=<its output folder>, or set resume=auto to start fresh when there is none."
            )
        return last
    path = Path(str(resume))
    if path.is_dir():  # a killed job's folder (or its checkpoints/ folder)
        found = next((p for p in (path / "checkpoints" / LAST_CHECKPOINT, path / LAST_CHECKPOINT) if p.is_file()), None)
        if found is None:
            raise ConfigError(f"resume={resume!r}: that folder has no checkpoints/{LAST_CHECKPOINT} to continue from.")
        return found
    if not path.is_file():
        raise ConfigError(
            f"resume={resume!r}: no such checkpoint file or job folder. Give auto, true, false, a .ckpt path or the "
            "folder of the job to continue."
        )
    return path


def _rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(state), py_gauss],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, py_gauss = states["python"]
    random.setstate((version, tuple(state), py_gauss))


def _generator(loader: Any) -> torch.Generator | None:
    """The private generator a DataLoader shuffles with (the sampler's, else the loader's)."""
    for owner in (
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        loader,
    ):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator):
            return gen
    return None


class ResumableLoader:
    """The training DataLoader, resumable mid-epoch (see ``ResumableTraining``).

    Each epoch's order comes from the loader's own ``torch.Generator``. The work happens on
    the first ``next()``, not on ``iter()``, so Lightning's probing ``iter()`` changes nothing.
    """

    def __init__(self, loader: Any, owner: ResumableTraining) -> None:
        self.loader = loader
        self.owner = owner

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size, sampler, ... of the real loader
        return getattr(self.__dict__["loader"], name)

    def __iter__(self) -> Iterator[Any]:
        skip = self.owner._begin_epoch(_generator(self.loader))
        iterator = iter(self.loader)
        for _ in range(skip):
            next(iterator)
        yield from iterator

    # With these Lightning treats the loader as resumable (no "not resumable" warning). The
    # position itself travels in ResumableTraining's state, which Lightning restores for every
    # checkpoint, not only for one taken mid-epoch.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ResumableTraining(L.Callback):
    """Saves and restores what ``Trainer.fit(ckpt_path=...)`` does not: the global RNG states
    (torch, CUDA, NumPy, Python) and the position of the training loader (its shuffling
    generator's state when the epoch began, and the batches trained since). Pass
    ``wrap(train_loader, trainer)`` to ``fit``. Warns when the resumed job's configuration differs from
    the one that wrote the checkpoint.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self._gen: torch.Generator | None = None
        self._epoch_start: torch.Tensor | None = None  # generator state when this epoch began
        self._trained = 0  # batches of this epoch handed to training_step
        self._epoch_done = False
        self._loader_state: dict[str, Any] | None = None  # from a checkpoint, applied at the next epoch start
        self._rng: dict[str, Any] | None = None  # from a checkpoint, applied at on_train_start
        self._warned = False

    def wrap(self, loader: Any, trainer: L.Trainer) -> Any:
        """The training loader to pass to ``fit``; unchanged on several devices, where Lightning
        must see the DataLoader itself to shard it (a resumed epoch's order then differs)."""
        return ResumableLoader(loader, self) if trainer.world_size == 1 else loader

    def _begin_epoch(self, gen: torch.Generator | None) -> int:
        """An epoch's iteration starts: restore the generator if a checkpoint was loaded; returns
        how many batches to skip."""
        skip = 0
        state, self._loader_state = self._loader_state, None
        if state is not None and gen is None:
            log.warning(
                "the training loader shuffles without a private torch.Generator: the resumed epoch's order differs"
            )
        elif state is not None and state["generator"] is not None:
            if state["epoch_done"]:  # saved at an epoch end: the generator goes on where it stopped
                gen.set_state(state["generator"])
            else:  # saved mid-epoch: replay the epoch's order and skip the batches already trained
                gen.set_state(state["epoch_start"])
                skip = state["trained"]
        self._gen = gen
        self._epoch_start = gen.get_state() if gen is not None else None
        self._trained, self._epoch_done = skip, False
        return skip

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._trained += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_done = True  # runs before the checkpoint callbacks' epoch-end saves

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": _rng_states(),
            "loader": {
                "epoch_start": self._epoch_start,
                "generator": self._gen.get_state() if self._gen is not None else None,
                "trained": self._trained,
                "epoch_done": self._epoch_done,
            },
            "config": self.config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loader_state, self._rng = state["loader"], state["rng"]
        changed = _diff(state.get("config") or {}, self.config)
        if changed and not self._warned:  # once: testing the best checkpoint after fit loads this again
            log.warning("resuming with a configuration that differs from the checkpoint's: %s", "; ".join(changed))
            self._warned = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # As late as possible: nothing from here to the first training step draws random numbers.
        if self._rng is not None:
            _set_rng_states(self._rng)
            self._rng = None


class CsvHistory:
    """Keeps a resumed job's earlier CSV log rows: Lightning's CSVLogger deletes an existing
    ``metrics.csv`` when it starts, so ``set_aside`` moves it away first (adding to what an
    earlier resume set aside) and ``merge`` puts the rows back in front of the new ones.
    Rows logged between the last checkpoint and the kill appear twice."""

    def __init__(self, loggers: list[Any]) -> None:
        from lightning.pytorch.loggers import CSVLogger

        self.files = [Path(lg.log_dir) / "metrics.csv" for lg in loggers if isinstance(lg, CSVLogger)]

    @staticmethod
    def _aside(path: Path) -> Path:
        return path.with_name("metrics.before_resume.csv")

    def set_aside(self) -> None:
        for path in self.files:
            if path.is_file():
                _concat_csv([self._aside(path), path], self._aside(path))
                path.unlink()

    def merge(self) -> None:
        for path in self.files:
            if self._aside(path).is_file():
                _concat_csv([self._aside(path), path], path)
                self._aside(path).unlink()


def _concat_csv(sources: list[Path], target: Path) -> None:
    import csv

    rows: list[dict[str, str]] = []
    keys: dict[str, None] = {}
    for src in sources:
        if src.is_file():
            with src.open(newline="") as f:
                reader = csv.DictReader(f)
                keys.update(dict.fromkeys(reader.fieldnames or []))
                rows += list(reader)
    tmp = target.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted(keys))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(target)


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested config dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
