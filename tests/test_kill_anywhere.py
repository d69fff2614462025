"""kill -9 at random moments of each stage, then the same command again: the outputs equal an uninterrupted run's.

Generation samples its answers (the bundled template prefills only up to the query's opening quote, so every query
word is drawn by the tiny model at temperature 0.7): a resumed run must draw the same tokens as an uninterrupted
one, which only per-item seeds make true. The kill moments are random (a random count of finished records, then a
random pause); the seed of each draw is in the failure message, so a failure can be replayed with KILL_SEED.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from test_generate_cli import CORPUS
from test_relabel_cli import cli

KILLS = 2  # per stage


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_at_random(command: list, marker: Path, total: int, rng: random.Random) -> str:
    """Run `command`, SIGKILL it once `marker` has a random number of lines (of `total`) and a random pause more."""
    target, pause = rng.randrange(1, total), rng.uniform(0, 0.3)
    process = subprocess.Popen([sys.executable, "-c", command[0], *map(str, command[1:])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while process.poll() is None and count_lines(marker) < target and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(pause)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode in (0, -signal.SIGKILL), err.decode()[-2000:]
    return f"killed at {count_lines(marker)} of {total} lines of {marker.name} (target {target}, pause {pause:.2f} s)"


def strip_timing(log: Path) -> list:
    """A training log's lines without their wall-clock fields, which no two runs share."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("elapsed_s", "examples_per_s")}
            for line in log.read_text().splitlines()]


SYNTHGEN = "from synthgen.cli import main; main()"
DISTILL = "from distill.cli import main; main()"


def test_kill_9_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_llm_path, tiny_bert_path, minilm_path):
    seed = int(os.environ.get("KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    whole, run = tmp_path / "whole", tmp_path / "run"
    cache = tmp_path / "cache"
    generate = ["generate", "--corpus", CORPUS, "--llm", f"hf:{tiny_llm_path}", "--max-passages", "10",
                "--queries-per-passage", "2", "--batch-size", "2", "--max-tokens", "12", "--min-overlap", "0",
                "--max-copied-words", "50", "--keyphrase-queries", "1", "--quiet"]
    relabel = ["relabel", "--llm", f"hf:{tiny_llm_path}", "--judges", "ql,bm25", "--embedder", minilm_path,
               "--retrieval", "bm25", "--top-k", "6", "--judge-depth", "3", "--batch-pairs", "4", "--cache-dir",
               cache, "--quiet"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  max_query_length: 16\n  max_passage_length: 32\ndata:\n  hard_negatives: 1\n  dev_size: 0\n"
                      "train:\n  batch_size: 4\n  max_steps: 6\n  checkpoint_every: 1\n  lr: 1.0e-3\n  warmup_ratio: 0\n")

    def train(folder: Path) -> list:
        return ["train", recipe, "--set", f"model.base={tiny_bert_path}", "--set", f"data.train={folder / 'train.jsonl'}",
                "--set", f"output={folder / 'model'}", "--quiet"]

    notes = [f"KILL_SEED={seed}"]
    # generate: the progress file gets a line per finished batch
    assert cli([*generate, "--out", whole]) == 0
    batches = count_lines(whole / "generate.progress.jsonl")
    sampled = [json.loads(line)["query"] for line in (whole / "queries.jsonl").read_text().splitlines()]
    # 10 batches of the LLM's queries, then the keyphrase queries' batch
    assert batches == 11 and len(set(sampled)) >= 10, sampled  # the tiny model's own words, not a prefill
    for _ in range(KILLS):
        notes.append(kill_at_random([SYNTHGEN, *generate, "--out", run], run / "generate.progress.jsonl", batches, rng))
    assert cli([*generate, "--out", run]) == 0
    assert (run / "queries.jsonl").read_text() == (whole / "queries.jsonl").read_text(), notes

    # relabel: judgments.jsonl gets a line per judged pair
    assert cli([*relabel, "--run", whole]) == 0
    pairs = count_lines(whole / "judgments.jsonl")
    for _ in range(KILLS):
        notes.append(kill_at_random([SYNTHGEN, *relabel, "--run", run], run / "judgments.jsonl", pairs, rng))
    assert cli([*relabel, "--run", run]) == 0
    assert (run / "train.jsonl").read_text() == (whole / "train.jsonl").read_text(), notes

    # train: log.jsonl gets a line per step, and every step is a checkpoint
    from distill.cli import app as distill_app

    distill_app([str(x) for x in train(whole)], standalone_mode=False)
    steps = count_lines(whole / "model" / "log.jsonl")
    for _ in range(KILLS):
        notes.append(kill_at_random([DISTILL, *train(run)], run / "model" / "log.jsonl", steps, rng))
    distill_app([str(x) for x in train(run)], standalone_mode=False)
    a, b = load_file(str(whole / "model" / "model.safetensors")), load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys(), notes
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7, msg=lambda m: f"{m}\n{notes}")
    assert strip_timing(run / "model" / "log.jsonl") == strip_timing(whole / "model" / "log.jsonl"), notes


def test_kill_9_in_the_choose_stage_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_llm_path, tiny_bert_path):
    """--choose-keyphrases trains a second student after the first and copies the kept one to model/: killed
    anywhere in that training (or in the copy after it), the same command finishes it as if nothing had happened."""
    from synthgen.rundir import remove_tree
    from synthgen.stages.choose import LLM_MODEL
    from test_pipeline import corpus_args, pipeline

    seed = int(os.environ.get("KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    run = tmp_path / "run"
    args = [*corpus_args(CORPUS, tiny_llm_path, tmp_path), "--out", str(run), "--max-passages", "12",
            "--keyphrase-queries", "1", "--dev-passages", "22", "--queries-per-passage", "2", "--choose-keyphrases",
            *[x for item in (f"model.base={tiny_bert_path}", "train.batch_size=4", "train.max_steps=6",
                             "train.checkpoint_every=1", "model.max_passage_length=32")
              for x in ("--set", item)]]
    pipeline(*args)
    section = json.loads((run / "manifest.json").read_text())["pipeline"]
    whole = {name: load_file(str(run / folder / "model.safetensors")) for name, folder in (("llm", LLM_MODEL),
                                                                                             ("kept", "model"))}
    log = strip_timing(run / LLM_MODEL / "log.jsonl")
    assert sum(line["event"] == "train" for line in log) == 6 and section["choice"]["llm"] is not None  # two models

    notes = [f"KILL_SEED={seed}"]
    remove_tree(run / LLM_MODEL)  # the stage's output gone: the pipeline runs the choose stage again, only it
    remove_tree(run / "model")
    for _ in range(KILLS):
        notes.append(kill_at_random([SYNTHGEN, "pipeline", *args], run / LLM_MODEL / "log.jsonl", len(log), rng))
    pipeline(*args)
    again = json.loads((run / "manifest.json").read_text())["pipeline"]
    statuses = {name: stage["status"] for name, stage in again["stages"].items()}
    assert statuses.pop("choose") in ("ran", "skipped"), notes  # skipped: a kill after the stage, in the copy
    assert set(statuses.values()) == {"skipped"}, notes
    assert again["choice"] == section["choice"], notes
    assert strip_timing(run / LLM_MODEL / "log.jsonl") == log, notes
    for name, folder in (("llm", LLM_MODEL), ("kept", "model")):
        resumed = load_file(str(run / folder / "model.safetensors"))
        assert resumed.keys() == whole[name].keys(), notes
        for key in resumed:
            torch.testing.assert_close(resumed[key], whole[name][key], rtol=1e-6, atol=1e-7,
                                       msg=lambda m: f"{folder}: {m}\n{notes}")
    assert not any(run.glob("model.*")), notes  # no staging folder left
