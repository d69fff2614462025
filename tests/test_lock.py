"""One writer per run folder: a second run is refused with the holder's pid, a killed holder blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relabel_corpus import passages, queries
from synthgen.records import dumps

HOLD = """
import sys, time
from pathlib import Path
from synthgen.lock import hold
with hold(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def holder(folder: Path, noun: str = "run folder") -> subprocess.Popen:
    """A process holding the folder's lock (what a running stage holds), once it has printed `held`."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), noun], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def synthgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from synthgen.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def run(tmp_path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "passages.jsonl").write_text("".join(dumps(p) + "\n" for p in passages()))
    (folder / "queries.jsonl").write_text("".join(dumps(q) + "\n" for q in queries()))
    return folder


@pytest.mark.parametrize("command", ["relabel", "generate", "pipeline"])
def test_a_second_run_on_a_held_folder_is_one_line_naming_the_pid(run, command):
    corpus = run.parent / "corpus.txt"
    corpus.write_text("Bees make honey from nectar.\n")
    args = {"relabel": ["relabel", "--run", str(run), "--judges", "bm25"],
            "generate": ["generate", "--corpus", str(corpus), "--out", str(run), "--llm", "hf:/nonexistent"],
            "pipeline": ["pipeline", "--corpus", str(corpus), "--out", str(run), "--llm", "hf:/nonexistent"]}[command]
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    process = holder(run)
    try:
        result = synthgen(*args)
    finally:
        process.kill()
        process.wait()
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: run folder {run} is in use by pid {process.pid}"]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_lock_left_by_a_killed_run_does_not_block(run):
    process = holder(run)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (run.parent / ".run.lock").exists()  # the file stays; the kernel's lock went with the process
    result = synthgen("relabel", "--run", str(run), "--judges", "bm25", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (run / "train.jsonl").stat().st_size > 0


def test_distill_train_refuses_a_model_folder_in_use(tmp_path, tiny_bert_path):
    from distill.recipe import load_recipe
    from distill.train import train
    from synthgen.errors import UserError

    data = tmp_path / "train.jsonl"
    data.write_text("".join(dumps({"query": q.query, "pos": ["a passage"]}) + "\n" for q in queries()))
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"model:\n  base: {tiny_bert_path}\ndata:\n  train: {data}\noutput: {tmp_path / 'model'}\n")
    recipe = load_recipe(recipe_file, [])
    process = holder(tmp_path / "model", "model folder")
    try:
        with pytest.raises(UserError, match=f"model folder .*model is in use by pid {process.pid}$"):
            train(recipe, progress=False)
    finally:
        process.kill()
        process.wait()
    assert not (tmp_path / "model").exists()
