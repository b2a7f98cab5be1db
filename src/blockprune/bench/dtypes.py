"""Benchmark dtypes: the names accepted, and which a device can run (with a note where it is slow)."""

from __future__ import annotations

import torch

from blockprune.bench.environment import safe
from blockprune.errors import ConfigError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def normalise_dtype(name: str) -> str:
    """The canonical name of a dtype (``fp16`` -> ``float16``); an unknown one is a ConfigError."""
    key = str(name).replace("torch.", "")
    key = _ALIASES.get(key, key)
    if key not in DTYPES:
        raise ConfigError(f"benchmark dtype '{name}' is not supported; use one of {sorted(DTYPES)}.")
    return key


def dtype_skip_reason(dtype: str, device: torch.device) -> tuple[str | None, str | None]:
    """(reason to skip, note) for running ``dtype`` on ``device``."""
    if device.type == "cpu":
        if dtype == "float16":
            return "float16 is skipped on CPU (no fast kernels; not a CPU deployment format).", None
        if dtype == "bfloat16":
            try:
                torch.nn.functional.linear(
                    torch.ones(2, 4, dtype=torch.bfloat16), torch.ones(3, 4, dtype=torch.bfloat16)
                )
            except RuntimeError as err:
                return f"bfloat16 is not supported by this CPU build: {err}", None
            native = safe(lambda: torch.cpu._is_avx512_bf16_supported()) or safe(
                lambda: torch.cpu._is_amx_tile_supported()
            )
            return None, (
                None if native else "this CPU has no native bfloat16 instructions: bfloat16 is emulated (slow)."
            )
        return None, None
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return f"bfloat16 is not supported by {torch.cuda.get_device_name(device)}.", None
    return None, None
