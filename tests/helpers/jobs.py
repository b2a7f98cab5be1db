"""Compose the real Hydra config for an in-process job, shrunk to the tiny model on CPU."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from blockprune.config import CONFIG_DIR

FAST = [
    "model=tiny",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "logger=csv",
    "data.limit={train: 96, val: 48, test: 48}",
    "teacher.auto=false",  # the tiny random model is pruned as it is (tests/test_teacher.py covers the teacher)
]


#: MahaNews SHC's labels, for a teacher that jobs on the default data accept.
SHC_LABELS = [
    "Auto",
    "Bhakti",
    "Crime",
    "Education",
    "Fashion",
    "Health",
    "International",
    "Manoranjan",
    "Politics",
    "Sports",
    "Tech",
    "Travel",
]

#: The same tiny job as command-line overrides, for tests that run `python train.py` in a subprocess.
TINY_CLI = [
    "model=tiny",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "logger=csv",
    "callbacks=no_carbon",
    "bench.repeats=2",
    "bench.warmup=1",
    "data.limit={train: 64, val: 32, test: 32}",
    "teacher.auto=false",
]


def make_cfg(tmp_path: Path, overrides: list[str]):
    """Compose the real config and shrink it (1-2 tiny epochs, CPU), like a user's job."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=FAST + overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg["hydra"]
    return cfg
