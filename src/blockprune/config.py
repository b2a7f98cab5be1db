"""Where configs and outputs live, and the OmegaConf resolvers the configs use.

Kept apart from ``main`` so that the study, the CLI and the tests can compose a config without
importing the training story, and so that an installed package (``pip install .``) finds its
configs inside itself rather than beside a source tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from blockprune.run_names import run_info

#: The Hydra configs ship inside the package (``pkg://blockprune.conf``).
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def project_root() -> Path:
    """The folder outputs and the ``../shared`` look-up are relative to: ``$BLOCKPRUNE_ROOT``, else
    the source checkout when blockprune runs from one (``pip install -e .``), else the working directory."""
    if os.environ.get("BLOCKPRUNE_ROOT"):
        return Path(os.environ["BLOCKPRUNE_ROOT"]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "train.py").is_file():
        return checkout
    return Path.cwd()


def default_precision() -> str:
    """Mixed precision where the device has it: bf16 on Ampere or newer, fp16 on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def default_deterministic() -> bool:
    """Deterministic algorithms where they are free: on CPU (measured: no slower, e5-small-mr
    training step and forward pass); off on GPU, where some kernels are slower or refuse."""
    return not torch.cuda.is_available()


def register_resolvers() -> None:
    """The ``${blockprune_*:}`` resolvers of the configs (idempotent)."""
    OmegaConf.register_new_resolver("blockprune_root", lambda: str(project_root()), replace=True)
    OmegaConf.register_new_resolver("blockprune_deterministic", default_deterministic, replace=True)
    OmegaConf.register_new_resolver("blockprune_precision", default_precision, replace=True)
    OmegaConf.register_new_resolver("blockprune_run", run_info, replace=True)  # W&B name/group/job_type
    OmegaConf.register_new_resolver(
        "blockprune_first",
        lambda *values: next((v for v in values if v not in (None, "None", "")), None),
        replace=True,
    )


def entry_script() -> Path:
    """The script that runs one job in a new process (study rows, DDP ranks): the checkout's
    ``train.py``, or the installed package's ``main.py`` where there is no checkout."""
    script = project_root() / "train.py"
    return script if script.is_file() else Path(__file__).resolve().parent / "main.py"


register_resolvers()
