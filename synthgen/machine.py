"""What the machine offers that several modules ask about: whether bf16 pays on the CPU, its cores, and the cache
folder.

One answer serves the LLM backends, the retrievers and the student's training, so every stage computes in the
same precision on a given machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from synthgen.errors import UserError

BF16_MIN_SPEEDUP = 1.2  # below this a probe's noise could flip the choice from one run to the next; fp32 is exact


def _cpuinfo() -> list[dict[str, str]] | None:
    """/proc/cpuinfo as one field dict per logical CPU, or None where there is none (not Linux)."""
    try:
        blocks = Path("/proc/cpuinfo").read_text().split("\n\n")
    except OSError:
        return None
    cpus = []
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        if fields:
            cpus.append({k.strip(): v.strip() for k, v in fields.items()})
    return cpus


def cpu_has_bf16_units() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX); without them bf16 matmuls are emulated and
    hundreds of times slower than fp32, so there is nothing to measure."""
    cpus = _cpuinfo()
    flags = set(cpus[0].get("flags", "").split()) if cpus else set()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_prefers_bf16() -> bool:
    """Whether autocast to bf16 is the faster choice on this CPU: measured, not read from the flags.

    The flags say only that bf16 instructions exist. On an AVX512-BF16 CPU whose AMX units the hypervisor hides,
    torch's bf16 linear layers ran 1.9x slower than fp32, the LLM 1.2-1.5x and the student's encoding 1.4x
    (docs/benchmarks.md), so trusting the flag chose the slow path for every stage. The probe's ratio is kept
    under `cache_root()` per CPU, torch version and thread count: the first measurement decides for good, so a
    resumed run computes as it started."""
    if not cpu_has_bf16_units():
        return False
    return bf16_speedup() >= BF16_MIN_SPEEDUP


@lru_cache(maxsize=None)
def _remembered_speedup(key: str, path: Path) -> float:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), (int, float)):
        return float(known[key])
    from synthgen.rundir import write_json

    ratio = known[key] = round(probe_bf16_speedup(), 3)
    with contextlib.suppress(OSError, UserError):  # a read-only home only costs a probe per process
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, known)
    return ratio


def bf16_speedup(path: Path | None = None) -> float:
    """fp32 time over bf16 time of a linear layer of the bundled models' size, remembered in `path`
    (default: cache_root()/bf16-speedup.json)."""
    return _remembered_speedup(bf16_probe_key(), path or cache_root() / "bf16-speedup.json")


def bf16_probe_key() -> str:
    """What a remembered ratio holds for: the CPU (name, model number, bf16 flags), torch and its thread count."""
    import torch

    return f"{_cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def probe_bf16_speedup(rounds: int = 5) -> float:
    """fp32 seconds over bf16-autocast seconds for SmolLM2's and MiniLM's layer shape (576 -> 1536, 256 rows);
    the arms take turns and each keeps its best round (~0.2 s)."""
    import torch

    layer = torch.nn.Linear(576, 1536)
    rows = torch.randn(256, 576, generator=torch.Generator().manual_seed(0))

    def run(context) -> None:
        with torch.no_grad(), context:
            for _ in range(4):
                layer(rows)

    best = best_rounds(rounds, {"fp32": lambda: run(contextlib.nullcontext()),
                                "bf16": lambda: run(torch.autocast("cpu", dtype=torch.bfloat16))})
    return best["fp32"] / best["bf16"]


def best_rounds(rounds: int, arms: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each arm's fastest of `rounds` runs, the arms taking turns, so a neighbour's load falls on all alike."""
    best = {name: float("inf") for name in arms}
    for _ in range(rounds):
        for name, work in arms.items():
            start = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _cpu_model() -> str:
    """The CPU's name, model number and bf16 flags: a hypervisor may show one name for hosts with and without AMX."""
    cpus = _cpuinfo()
    if not cpus:
        return platform.processor() or platform.machine()
    fields = cpus[0]
    units = sorted(set(fields.get("flags", "").split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    return " ".join([fields.get("model name", platform.machine()), f"model {fields.get('model', '?')}", *units])


def cache_root() -> Path:
    """~/.cache/synthgen (or under $XDG_CACHE_HOME): converted models and passage embeddings."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthgen"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on: a second hyperthread of a core adds little to
    matmul-bound work and slows it when both threads compete, and a container may allow fewer CPUs than exist."""
    allowed = allowed_cpus()
    cpus = _cpuinfo()
    if cpus is None:
        return len(allowed)
    cores = set()
    for fields in cpus:
        if "processor" in fields and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id"), fields.get("core id", fields["processor"])))
    return len(cores) or len(allowed)


def allowed_cpus() -> set[int]:
    """The CPUs' numbers this process may run on (its affinity), or all of them where the OS does not say."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


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
        return "bf16" if device == "cpu" and cpu_prefers_bf16() else "fp32"
    if name == "bf16" and device == "cpu" and not cpu_has_bf16_units():
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
