"""What the machine offers that several modules ask about: native bf16 on the CPU, and the cache folder.

One reading of /proc/cpuinfo serves the LLM backends and the student's training, so both agree on whether
bf16 is computed or emulated (emulated bf16 matmuls are hundreds of times slower than fp32).
"""

from __future__ import annotations

import os
from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 matmuls (AVX512-BF16 or AMX) rather than emulating them."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cache_root() -> Path:
    """~/.cache/synthgen (or under $XDG_CACHE_HOME): converted models and passage embeddings."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthgen"
