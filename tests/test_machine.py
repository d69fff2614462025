"""Machine capabilities: cores, threads, and whether bf16 pays."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from synthgen import machine
from synthgen.machine import physical_cores, use_threads


def test_physical_cores_are_within_the_cpus_this_process_may_use():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


def test_use_threads_sets_torchs_threads_and_zero_means_the_physical_cores():
    import torch

    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_threads(0) == physical_cores() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("argv", "named"), [
    (["synthgen", "generate", "--corpus", ".", "--out", "x", "--threads", "-1"], "--threads"),
    (["synthgen", "relabel", "--run", "x", "--threads", "-1"], "--threads"),
    (["distill", "eval", "m", "--data", "d", "--threads", "-1"], "--threads"),
    (["synthgen", "generate", "--out", "x"], "--corpus"),
    (["distill", "eval", "m", "--data", "d", "--no-such-option"], "--no-such-option"),
])
def test_a_usage_error_is_exit_2_without_a_traceback_through_the_real_entry_point(argv, named, tmp_path):
    # Through `main()` as installed, not typer's CliRunner: the runner handles usage errors itself, so it
    # passed while the entry point printed tracebacks for them (typer 0.29 raises its own copy of click's errors).
    code = f"from {argv[0]}.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error:" in result.stderr and named in result.stderr


def test_the_bf16_probe_measures_a_real_ratio():
    ratio = machine.probe_bf16_speedup(rounds=2)
    assert math.isfinite(ratio) and ratio > 0


def test_the_first_bf16_measurement_is_remembered_and_decides_later_runs(tmp_path):
    # A resumed run must compute in the precision it started with, so the file, not a new probe, decides.
    path = tmp_path / "bf16-speedup.json"
    first = machine.bf16_speedup(path)
    assert json.loads(path.read_text()) == {machine.bf16_probe_key(): first}
    path.write_text(json.dumps({machine.bf16_probe_key(): 3.0, "another cpu": 0.5}))
    machine._remembered_speedup.cache_clear()
    assert machine.bf16_speedup(path) == 3.0
    assert json.loads(path.read_text())["another cpu"] == 0.5


def test_a_damaged_bf16_file_is_measured_again_and_rewritten(tmp_path):
    path = tmp_path / "bf16-speedup.json"
    path.write_text("{not json")
    ratio = machine.bf16_speedup(path)
    assert json.loads(path.read_text()) == {machine.bf16_probe_key(): ratio}


def test_auto_precision_on_a_cpu_follows_the_measurement_not_the_flags():
    expected = machine.cpu_has_bf16_units() and machine.bf16_speedup() >= machine.BF16_MIN_SPEEDUP
    assert machine.resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")
    assert machine.cpu_prefers_bf16() == expected
