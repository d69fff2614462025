"""Data-parallel training (distill.distributed) on 2 CPU processes with gloo, launched by the real torchrun.

A step on 2 ranks must give the loss and gradients of one process on the whole batch (float64, so the comparison
is about the method, not rounding), and 2-rank training must end with the weights of 1-rank training, also when
it resumes a 1-rank run's checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from distill.recipe import load_recipe, save_recipe
from distill.train import train

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str, nproc: int = 2) -> None:
    """`torchrun --standalone --nproc_per_node N ...` from this checkout, so every rank imports its code."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert_path, tmp_path_factory) -> Path:
    """The tiny BERT without dropout: ranks draw dropout masks from their own streams, which a comparison of
    one process with two must leave out."""
    folder = tmp_path_factory.mktemp("bert-no-dropout") / "model"
    shutil.copytree(tiny_bert_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_ranks_give_the_loss_and_gradients_of_one_process(no_dropout_bert, tmp_path):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "tests/ddp_step.py", str(no_dropout_bert), str(one)], cwd=REPO, env=env, check=True,
                   timeout=600)
    torchrun("tests/ddp_step.py", str(no_dropout_bert), str(two))
    a, b = load_file(str(one)), load_file(str(two))
    loss_diff = float((a["loss"] - b["loss"]).abs().max())
    grads = {k: v for k, v in a.items() if k.startswith("grad.")}
    grad_diff = max_difference(grads, {k: b[k] for k in grads})
    scale = max(float(v.abs().max()) for v in grads.values())
    print(f"float64, 2 ranks vs 1 process: loss {float(a['loss']):.12f}, |loss diff| {loss_diff:.2e}, "
          f"max |grad diff| {grad_diff:.2e} (largest gradient {scale:.2e}); tolerance 1e-10")
    assert scale > 0 and len(grads) > 10
    assert loss_diff < 1e-10 and grad_diff < 1e-10


def recipe_for(tmp_path: Path, base: Path, output: str, *extra: str):
    rows = []
    for i in range(15):
        topic = ["bees swarm in spring", "bread dough rises", "rivers carry silt", "chess openings gambit"][i % 4]
        other = ["tax law return", "volcano lava ash", "jazz swing music", "solar panel light"][i % 4]
        rows.append({"query": f"{topic.split()[i % 3]} {i}", "pos": [f"{topic} note {i}"], "neg": [f"{other} note {i}"]})
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_recipe(None, [
        f"model.base={base}", "model.max_query_length=16", "model.max_passage_length=24", f"data.train={data}",
        "data.dev_size=0", "data.hard_negatives=1", "train.batch_size=7", "train.mini_batch_size=3", "train.lr=1e-3",
        "train.max_steps=4", "train.warmup_ratio=0", "train.precision=fp32", "train.device=cpu",
        "train.checkpoint_every=1", f"output={tmp_path / output}", *extra,
    ])


def test_two_ranks_train_to_the_weights_of_one_and_resume_its_checkpoint(no_dropout_bert, tmp_path):
    # 15 examples in batches of 7: step 3 is the epoch's last batch, 1 example, so rank 1 has no query of its own
    single = train(recipe_for(tmp_path, no_dropout_bert, "one"), progress=False)
    two = recipe_for(tmp_path, no_dropout_bert, "two")
    save_recipe(two, tmp_path / "two.yaml")
    torchrun("-m", "distill", "train", str(tmp_path / "two.yaml"), "--quiet")
    expected = load_file(str(tmp_path / "one" / "model.safetensors"))
    got = load_file(str(tmp_path / "two" / "model.safetensors"))
    difference = max_difference(expected, got)
    print(f"float32, 4 steps of AdamW: max |weight diff| 2 ranks vs 1 = {difference:.2e}; tolerance 1e-5")
    assert difference < 1e-5
    losses = [json.loads(line)["loss"] for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert losses == pytest.approx([json.loads(line)["loss"] for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()], abs=1e-5)
    assert single.steps == 4 and not (tmp_path / "two" / "train_state").exists()

    # a 1-rank run stopped after step 2 goes on under 2 ranks from its checkpoint
    def stop(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    resumed = recipe_for(tmp_path, no_dropout_bert, "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(resumed, progress=False, on_step=stop)
    save_recipe(resumed, tmp_path / "resumed.yaml")
    torchrun("-m", "distill", "train", str(tmp_path / "resumed.yaml"), "--quiet")
    difference = max_difference(expected, load_file(str(tmp_path / "resumed" / "model.safetensors")))
    print(f"1 rank for 2 steps, then 2 ranks: max |weight diff| vs 1 rank throughout = {difference:.2e}")
    assert difference < 1e-5
