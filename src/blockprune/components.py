"""Objects built from the config (``_target_``), with a component's own user error let through."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from blockprune.config import CONFIG_DIR
from blockprune.errors import BlockpruneError


def build(node: DictConfig, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, letting a component's own user error through unwrapped
    (Hydra wraps it in an InstantiationException, which would print as a traceback)."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, BlockpruneError):
            raise err.__cause__ from None
        raise


def build_all(group: DictConfig | None) -> list[Any]:
    """Every ``_target_`` entry of a config group (callbacks, loggers), in config order."""
    return [build(c) for c in (group or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


def build_pruning(prune: DictConfig | None):
    """The pruning callback, or None for the dense baseline.

    ``prune=none`` with a sparsity above 0 (the everyday ``python train.py -m
    prune.sparsity=0.25,0.5,0.75``) means block pruning with ``conf/prune/block.yaml``'s settings.
    """
    if not prune or ("_target_" not in prune and not prune.get("sparsity")):
        return None
    if "_target_" not in prune:
        prune = OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "prune" / "block.yaml"), prune)
    return build(prune)
