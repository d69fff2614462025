"""What the machine offers that several modules ask about: native bf16 on the CPU, its cores, and the cache folder.

One reading of /proc/cpuinfo serves the LLM backends and the student's training, so both agree on whether
bf16 is computed or emulated (emulated bf16 matmuls are hundreds of times slower than fp32).
"""

from __future__ import annotations

import os
from pathlib import Path

from synthgen.errors import UserError


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


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on: a second hyperthread of a core adds little to
    matmul-bound work and slows it when both threads compete, and a container may allow fewer CPUs than exist."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        blocks = Path("/proc/cpuinfo").read_text().split("\n\n")
    except OSError:
        return len(allowed)
    cores = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" in fields and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id"), fields.get("core id", fields["processor"])))
    return len(cores) or len(allowed)


def torch_threads() -> int:
    """Torch's intra-op threads now: manifests record it beside every rate, which means little without it."""
    import torch

    return torch.get_num_threads()


def use_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads for the rest of the process (0: `physical_cores()`); returns the number."""
    import torch

    n = threads if threads > 0 else physical_cores()
    torch.set_num_threads(n)
    return n


def resolve_precision(name: str, device: str) -> str:
    """fp32, bf16 or fp16 for autocast; the weights themselves stay fp32."""
    import torch

    on_cuda = device.startswith("cuda")
    if name == "auto":
        if on_cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"
    if name == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        raise UserError("precision bf16: this CPU has no AVX512-BF16/AMX, so bf16 is emulated and far slower; use fp32 or auto")
    if name == "fp16" and not on_cuda:
        raise UserError(f"precision fp16 needs a CUDA device (device is {device}); use fp32 or auto")
    return name


def autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)
