"""Machine capabilities: cores and threads."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

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


@pytest.mark.parametrize("argv", [["synthgen", "generate", "--corpus", ".", "--out", "x"],
                                  ["synthgen", "relabel", "--run", "x"], ["distill", "eval", "m", "--data", "d"]])
def test_a_negative_thread_count_is_a_usage_error(argv):
    from distill.cli import app as distill_app
    from synthgen.cli import app as synthgen_app

    app = synthgen_app if argv[0] == "synthgen" else distill_app
    result = CliRunner().invoke(app, argv[1:] + ["--threads", "-1"])
    assert result.exit_code == 2
    assert "--threads" in result.output
