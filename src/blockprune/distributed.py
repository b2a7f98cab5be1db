"""Lightning's DDP inside Hydra jobs (``trainer=ddp``): how the other ranks start, and clean-up.

Lightning starts ranks 1..N-1 by running the script again with ``sys.argv`` plus
``hydra.run.dir=<hydra.run.dir>``. In a Hydra multirun that command holds ``-m`` and the whole
sweep, and ``hydra.run.dir`` is a fresh timestamp: each rank would start a sweep of its own in a
folder of its own (the known Hydra + DDP trap). ``job_command_for_ranks`` makes the command the
one of *this* job, writing into this job's folder. Between the jobs of a sweep that run in one
process, ``release_ranks`` takes down the process group and the rank variables Lightning left
in the environment, which would otherwise make the next job wait for ranks that never come, and
detaches Lightning's process observer, which would end the next job for this one's failure. The
observer also checks less often (``OBSERVER_PERIOD_S``), so that when a job fails on every rank,
rank 0 has time to record the failure and release the ranks before the observer sees a rank's
error code and kills the whole sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, read_write

_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_RANK_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
#: Seconds between the process observer's checks (Lightning: 5). A rank that crashed alone is still
#: noticed and the job ended, this much later; a rank that failed with rank 0 is released first.
OBSERVER_PERIOD_S = 60


def config_flags(argv: list[str]) -> list[str]:
    """The ``--config-name X`` style flags of a Hydra command line (they choose the config, not a job)."""
    out, take_next = [], False
    for arg in argv:
        if take_next or arg.split("=", 1)[0] in _CONFIG_FLAGS and "=" in arg:
            out.append(arg)
            take_next = False
        elif arg in _CONFIG_FLAGS:
            out.append(arg)
            take_next = True
    return out


@contextmanager
def job_command_for_ranks(script: str, world_size: int) -> Iterator[None]:
    """While Lightning launches the other ranks (in the first ``fit``), ``sys.argv`` is
    ``script`` with this job's own overrides and Hydra's run dir is this job's folder.
    Nothing changes for one process, or outside a job Hydra started (a config composed in code)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    if world_size == 1 or hydra is None or OmegaConf.select(hydra, "runtime.output_dir", default=None) is None:
        yield
        return
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as launcher

    import __main__

    def patient_observer(child_processes: list) -> None:
        fabric_launcher._ChildProcessObserver(
            child_processes=child_processes, main_pid=os.getpid(), sleep_period=OBSERVER_PERIOD_S
        ).start()

    saved = sys.argv, getattr(__main__, "__spec__", None), hydra.run.dir, launcher._launch_process_observer
    sys.argv = [script, *config_flags(sys.argv[1:]), *hydra.overrides.task]
    __main__.__spec__ = None  # Lightning then runs `python <script>`, not `python -m <the caller's module>`
    launcher._launch_process_observer = patient_observer
    with read_write(hydra):
        hydra.run.dir = hydra.runtime.output_dir
    try:
        yield
    finally:
        sys.argv, __main__.__spec__, launcher._launch_process_observer = saved[0], saved[1], saved[3]
        with read_write(hydra):
            hydra.run.dir = saved[2]


def environment_snapshot() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in _RANK_VARIABLES}


def release_ranks(trainer: Any, before: dict[str, str | None], grace_s: float = 60.0) -> None:
    """In the process that launched the ranks: wait for them to end, destroy the process group
    and restore the rank variables to ``before`` (so the next job in this process starts afresh).

    The other ranks end before rank 0 (it alone saves and writes); one still running ``grace_s``
    later is stuck in a collective step rank 0 never reached (rank 0 failed) and is killed.
    """
    launcher = getattr(trainer.strategy, "launcher", None)
    procs = getattr(launcher, "procs", [])
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Lightning's process observer watches this very list and ends the whole process when a rank
    # has exited with an error; emptied, it stops, so a failed job cannot end the next job of a sweep.
    procs.clear()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
