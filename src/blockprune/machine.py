"""The machine a number was measured on: CPU model, the instructions int8/bf16 kernels need, versions.

One reader for the benchmark and for deployment, so a speed figure never travels without the CPU
it came from (a speed-up on a CPU with AMX says little about one with only AVX2).
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

#: CPU flags that decide what int8 and bfloat16 kernels give (VNNI, AVX512-BF16, AMX).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu() -> tuple[str, list[str]]:
    """The CPU model name and which of :data:`CPU_FLAGS` it has (from /proc/cpuinfo where there is one)."""
    name, flags = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if name is None and key.strip().lower() == "model name":
                name = value.strip()
            elif flags is None and key.strip().lower() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [f for f in CPU_FLAGS if f in (flags or ())]
