"""How much of this process's CPUs other work took while something was measured: the time budget's rates are
this machine's speed as it was during the measuring, and on a machine shared with another job they stand for a
slower machine than the one the rest of the run may get.

Measured, not guessed: a SciFact run started beside the test suite on 2 cores chose 585 of 1,280 passages where the
same machine alone chose all of them (docs/results.md, draw 28), and nothing in its report said why. So the
budget stage reads the kernel's CPU accounting before and after its probes: the busy time of the CPUs this process
may run on (hypervisor steal included: a virtual machine's neighbours) minus the time this process and its
descendants used (an LLM engine's worker process is ours). Linux only; elsewhere, and in a container whose CPU
time is capped by a cgroup quota rather than by the CPUs it may use (the host's CPUs then belong to others by
design), the share is unknown (None) and nothing is claimed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from synthgen.machine import allowed_cpus

# Above this share of the CPUs' time taken by others, the budget's choice is reported as made on a busy machine.
# One core's worth on a 2-core machine is 0.5; a desktop's idle daemons take a few percent.
BUSY_SHARE = 0.2


@dataclass(frozen=True)
class CpuTimes:
    """Clock ticks at one moment: of the CPUs' busy and total time, and of this process tree."""

    busy: int
    total: int
    own: int


def _fields_after_name(stat: str) -> list[str]:
    """/proc/PID/stat's fields after the command name, which may hold spaces and parentheses."""
    return stat[stat.rindex(")") + 2:].split()


def own_ticks(pid: int | None = None, proc: Path = Path("/proc")) -> int:
    """user + system ticks of process `pid` (default: this one) and its living descendants, each with the ticks
    of its own children that it reaped."""
    root = pid or os.getpid()
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _fields_after_name((entry / "stat").read_text())
        except (OSError, ValueError):  # a process that ended while the folder was read
            continue
        # after the name: state, ppid (index 1) ... utime, stime, cutime, cstime (indexes 11 to 14)
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])
    total, todo = 0, [root]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def cpu_ticks(cpus: set[int], proc: Path = Path("/proc")) -> tuple[int, int]:
    """(busy, total) ticks of the CPUs numbered in `cpus`, from /proc/stat (idle and iowait are not busy)."""
    busy = total = 0
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        numbers = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal (guest is in user)
        total += sum(numbers)
        busy += sum(numbers) - numbers[3] - numbers[4]
    return busy, total


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time a cgroup quota allows this process (v2 cpu.max, v1 cpu.cfs_quota_us, on its cgroup or
    one above it), the smallest where several are set; None: no quota."""
    quotas = []
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            folder, read = root, _quota_v2
        elif "cpu" in controllers.split(","):
            folder, read = root / "cpu", _quota_v1
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts) + 1):
            quota = read(folder.joinpath(*parts[:depth]))
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _quota_v2(folder: Path) -> float | None:
    try:
        limit, period = (folder / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None


def snapshot(cpus: set[int] | None = None) -> CpuTimes | None:
    """The counts now, for `cpus` (default: those this process may run on); None where they cannot be had."""
    if cpu_quota() is not None:
        return None
    try:
        busy, total = cpu_ticks(cpus or allowed_cpus())
        return CpuTimes(busy=busy, total=total, own=own_ticks())
    except (OSError, ValueError, IndexError):
        return None


def others_share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share of the CPUs' time between two snapshots that other processes (and the hypervisor) took."""
    if before is None or after is None or after.total <= before.total:
        return None
    others = (after.busy - before.busy) - (after.own - before.own)
    return round(min(max(others / (after.total - before.total), 0.0), 1.0), 3)

