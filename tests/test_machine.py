"""Machine capabilities: cores and threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
