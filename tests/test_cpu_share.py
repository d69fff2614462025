"""Other processes' share of the CPUs, read from the kernel's accounting (synthgen.cpu_share): the parsing on
written files, then a real busy process outside and inside this process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthgen import cpu_share
from synthgen.machine import allowed_cpus
from synthgen.stages.budget import busy_warning


def _stat(pid: int, ppid: int, name: str, ticks: tuple[int, int, int, int]) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    return f"{pid} ({name}) S {ppid} 1 1 0 -1 0 0 0 0 0 {' '.join(map(str, ticks))} 20 0 1 0\n"


def test_own_ticks_add_up_the_process_and_its_descendants_only(tmp_path):
    table = {10: (1, "python", (5, 1, 2, 0)),       # the root
             11: (10, "vllm (engine) x", (7, 3, 0, 0)),  # a child whose name holds spaces and parentheses
             12: (11, "worker", (4, 0, 0, 1)),       # a grandchild
             13: (1, "neighbour", (100, 50, 0, 0)),  # another process tree
             14: (13, "its child", (9, 9, 0, 0))}
    for pid, (ppid, name, ticks) in table.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, ppid, name, ticks))
    (tmp_path / "self").mkdir()  # not a process number: skipped
    assert cpu_share.own_ticks(10, proc=tmp_path) == 8 + 10 + 5
    assert cpu_share.own_ticks(13, proc=tmp_path) == 150 + 18


def test_cpu_ticks_count_only_the_cpus_named_and_steal_as_busy(tmp_path):
    (tmp_path / "stat").write_text(
        "cpu  30 0 6 100 4 0 0 2 0 0\n"
        "cpu0 10 0 2 50 2 0 0 0 0 0\n"
        "cpu1 20 0 4 50 2 0 0 2 0 0\n"
        "intr 12345\n")
    assert cpu_share.cpu_ticks({1}, proc=tmp_path) == (26, 78)
    assert cpu_share.cpu_ticks({0, 1}, proc=tmp_path) == (38, 142)


def test_a_cgroup_quota_is_found_on_the_process_cgroup_or_above_it(tmp_path):
    membership = tmp_path / "cgroup"
    membership.write_text("0::/a/b\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "cpu.max").write_text("max 100000\n")
    assert cpu_share.cpu_quota(tmp_path, membership) is None
    (tmp_path / "a" / "cpu.max").write_text("200000 100000\n")
    assert cpu_share.cpu_quota(tmp_path, membership) == 2.0
    v1 = tmp_path / "v1"
    (v1 / "cpu" / "docker").mkdir(parents=True)
    (v1 / "cpu" / "docker" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "docker" / "cpu.cfs_period_us").write_text("100000\n")
    membership.write_text("4:memory:/docker\n2:cpu,cpuacct:/docker\n")
    assert cpu_share.cpu_quota(v1, membership) == 1.5
    membership.write_text("4:memory:/docker\nnot a cgroup line\n")  # no cpu controller named: no quota known
    assert cpu_share.cpu_quota(v1, membership) is None


def test_the_share_is_of_the_cpus_time_others_used_and_unknown_without_counts():
    before = cpu_share.CpuTimes(busy=100, total=400, own=50)
    after = cpu_share.CpuTimes(busy=300, total=600, own=100)  # 200 ticks busy, 50 of them ours
    assert cpu_share.others_share(before, after) == 0.75
    assert cpu_share.others_share(None, after) is None
    assert cpu_share.others_share(after, after) is None


def test_the_warning_names_the_share_and_the_way_out_and_stays_quiet_below_the_threshold():
    assert busy_warning({"others_cpu_share": 0.47}).startswith("other processes took 47% of the CPU time while the time budget measured")
    assert "--max-passages N" in busy_warning({"others_cpu_share": 0.47})
    assert busy_warning({"others_cpu_share": cpu_share.BUSY_SHARE / 2}) == ""
    assert busy_warning({"others_cpu_share": None}) == ""
    assert busy_warning({}) == ""  # a budget section written before the share was measured


BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def _measure(cpu: int, seconds: float = 1.0) -> tuple[float, float]:
    """Others' share of `cpu` over the window, and this process tree's."""
    before = cpu_share.snapshot({cpu})
    time.sleep(seconds)
    after = cpu_share.snapshot({cpu})
    return cpu_share.others_share(before, after), (after.own - before.own) / (after.total - before.total)


def _pinned(cpu: int, code: str) -> list[str]:
    return [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n{code}"]


needs_accounting = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or not Path("/proc/stat").exists() or cpu_share.cpu_quota() is not None,
    reason="needs Linux's /proc accounting and no cgroup CPU quota")


@needs_accounting
def test_a_busy_process_outside_this_tree_is_counted_as_others():
    cpu = min(allowed_cpus())
    # the middle process exits at once, so the busy one is adopted by init: not a descendant of this process
    spawn = f"import subprocess, sys\nsubprocess.Popen({_pinned(cpu, BUSY_LOOP.format(seconds=2.5))!r}, start_new_session=True)\n"
    subprocess.run([sys.executable, "-c", spawn], check=True)
    time.sleep(0.5)  # its interpreter started
    others, ours = _measure(cpu)
    assert others > 0.5 and ours < 0.2


@needs_accounting
def test_the_work_of_this_process_tree_is_not_counted_as_others():
    cpu = min(allowed_cpus())
    child = subprocess.Popen(_pinned(cpu, BUSY_LOOP.format(seconds=2.5)))
    try:
        time.sleep(0.5)
        _, ours = _measure(cpu)
        # the child's ticks are ours (a neighbour's job may share the CPU with it, so no bound on others' share)
        assert ours > 0.3
    finally:
        child.wait()
