"""What a timing depends on: versions, the CPU (model and the instructions int8/bf16 need), threads, GPU.

Every benchmark result carries this, so a number is never separated from the machine it was
measured on (a speed-up on a CPU with AMX says little about one with only AVX2).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Callable
from typing import Any

import torch

from blockprune.machine import CPU_FLAGS, cpu, version

__all__ = ["CPU_FLAGS", "cpu", "environment", "safe", "version"]


def safe(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None where it raises: for purely informational fields."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - purely informational
        return None


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, hardware and thread settings that a timing depends on."""
    dev = torch.device(device)
    cpu_name, cpu_flags = cpu()
    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "onnxruntime": version("onnxruntime"),
        "blockprune": version("blockprune"),
        "device": str(dev),
        "cpu": cpu_name,
        "cpu_flags": cpu_flags,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": safe(lambda: torch.backends.cpu.get_cpu_capability()),
    }
    if dev.type == "cuda":
        env.update(
            device_name=torch.cuda.get_device_name(dev),
            cuda=torch.version.cuda,
            cudnn=safe(torch.backends.cudnn.version),
            gpu_memory_gb=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1),
        )
    else:
        env["device_name"] = env["cpu"]
    return env
