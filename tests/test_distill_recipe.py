"""Recipes: defaults that load, every kind of mistake a one-line error naming the key, overrides, round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.recipe import Recipe, load_recipe, save_recipe
from synthgen.errors import UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def train_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_and_values_load(tmp_path, train_file):
    recipe = load_recipe(write(tmp_path, f"data:\n  train: {train_file}\ntrain:\n  lr: 1e-5\n  batch_size: 64\nloss:\n  matryoshka_dims: [384, 128]\n"))
    assert recipe.train.lr == 1e-5  # YAML reads 1e-5 as text; the recipe takes it as the number it means
    assert recipe.train.batch_size == 64
    assert recipe.loss.matryoshka_dims == [384, 128]
    assert recipe.train.mini_batch_size == Recipe().train.mini_batch_size


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_shipped_recipes_load(name, train_file):
    recipe = load_recipe(REPO / "recipes" / name, [f"data.train={train_file}"])
    assert recipe.output


BAD = [
    ("train:\n  lrr: 0.1\n", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    ("trian:\n  lr: 0.1\n", "unknown key 'trian' (did you mean 'train'?)"),
    ("model:\n  polling: mean\n", "did you mean 'model.pooling'"),
    ("train: 5\n", "train must be a mapping"),
    ("- a\n- b\n", "expected a mapping of sections"),
    ("train:\n  batch_size: big\n", "train.batch_size must be a whole number"),
    ("train:\n  batch_size: 2.5\n", "train.batch_size must be a whole number"),
    ("train:\n  lr: fast\n", "train.lr must be a number"),
    ("lora:\n  enabled: 3\n", "lora.enabled must be true or false"),
    ("model:\n  query_prefix: [1]\n", "model.query_prefix must be text"),
    ("loss:\n  matryoshka_dims: 384\n", "loss.matryoshka_dims must be a list"),
    ("loss:\n  matryoshka_dims: [384, x]\n", "loss.matryoshka_dims[1] must be a whole number"),
    ("train:\n  lr: 0\n", "train.lr must be in (0, 1)"),
    ("train:\n  batch_size: 0\n", "train.batch_size must be >= 1"),
    ("train:\n  mini_batch_size: 0\n", "train.mini_batch_size must be >= 1"),
    ("train:\n  warmup_ratio: 1.5\n", "train.warmup_ratio must be in [0, 1)"),
    ("train:\n  epochs: 0\n", "train.epochs must be >= 1"),
    ("train:\n  max_steps: -1\n", "train.max_steps must be >= 0"),
    ("train:\n  weight_decay: -1\n", "train.weight_decay must be >= 0"),
    ("train:\n  max_grad_norm: -1\n", "train.max_grad_norm must be >= 0"),
    ("train:\n  checkpoint_every: 0\n", "train.checkpoint_every must be >= 1"),
    ("train:\n  log_every: 0\n", "train.log_every must be >= 1"),
    ("train:\n  layer_decay: 0\n", "train.layer_decay must be in (0, 1]"),
    ("train:\n  schedule: cosin\n", "train.schedule must be one of linear, cosine, constant, got 'cosin' (did you mean 'cosine'?)"),
    ("train:\n  precision: fp8\n", "train.precision must be one of"),
    ("train:\n  device: gpu\n", "train.device must be auto, cpu, cuda"),
    ("model:\n  pooling: maen\n", "(did you mean 'mean'?)"),
    ("model:\n  max_query_length: 0\n", "model.max_query_length must be 1..8192"),
    ("model:\n  max_passage_length: 100000\n", "model.max_passage_length must be 1..8192"),
    ("model:\n  base: ''\n", "model.base must name a model"),
    ("data:\n  dev_size: -1\n", "data.dev_size must be >= 0"),
    ("data:\n  hard_negatives: -2\n", "data.hard_negatives must be >= 0"),
    ("data:\n  max_examples: -2\n", "data.max_examples must be >= 0"),
    ("data:\n  topic_size: 0\n", "data.topic_size must be >= 1"),
    ("loss:\n  temperature: 0\n", "loss.temperature must be > 0"),
    ("loss:\n  in_batch_negatives: false\ndata:\n  hard_negatives: 0\n", "no negatives left"),
    ("loss:\n  matryoshka_dims: [64, 0]\n", "loss.matryoshka_dims must be positive"),
    ("loss:\n  matryoshka_dims: [64, 64]\n", "repeated size"),
    ("loss:\n  matryoshka_dims: [64, 32]\n  matryoshka_weights: [1]\n", "needs one weight per dim (2), got 1"),
    ("loss:\n  matryoshka_dims: [64]\n  matryoshka_weights: [0]\n", "must be >= 0 and not all 0"),
    ("loss:\n  distill: mse\n", "loss.distill must be one of none, margin_mse, kl"),
    ("loss:\n  distill_weight: -1\n", "loss.distill_weight must be >= 0"),
    ("loss:\n  distill_temperature: 0\n", "loss.distill_temperature must be > 0"),
    ("loss:\n  symmetric: true\n  contrastive: triplet\n", "loss.symmetric applies to loss.contrastive infonce only"),
    ("loss:\n  confidence_weights: true\n  contrastive: circle\n", "loss.confidence_weights applies to loss.contrastive infonce only"),
    ("lora:\n  r: 0\n", "lora.r must be >= 1"),
    ("lora:\n  alpha: 0\n", "lora.alpha must be >= 1"),
    ("lora:\n  dropout: 1\n", "lora.dropout must be in [0, 1)"),
    ("lora:\n  save: adapter\n", "(did you mean 'adapters'?)"),
    ("eval:\n  every: -1\n", "eval.every must be >= 0"),
    ("eval:\n  metric: ndcg@5\n", "eval.metric must be one of"),
    ("eval:\n  dev_pool: corpus\n", "eval.dev_pool must be one of"),
    ("eval:\n  batch_size: 0\n", "eval.batch_size must be >= 1"),
    ("eval:\n  beir_split: ''\n", "eval.beir_split must name a qrels split"),
    ("output: ''\n", "output must name a folder"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_recipe_is_one_line_error(tmp_path, train_file, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_recipe(path, [f"data.train={train_file}"] if "data:" not in text else [])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_files_are_named(tmp_path, train_file):
    with pytest.raises(UserError, match="data.train: no such file"):
        load_recipe(write(tmp_path, "data:\n  train: nowhere.jsonl\n"))
    with pytest.raises(UserError, match="data.dev: no such file"):
        load_recipe(write(tmp_path, f"data:\n  train: {train_file}\n  dev: nowhere.jsonl\n"))
    with pytest.raises(UserError, match="model.base: .* is neither a bundled model"):
        load_recipe(write(tmp_path, f"model:\n  base: {tmp_path / 'no-model'}\ndata:\n  train: {train_file}\n"))
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(UserError, match="holds no model"):
        load_recipe(write(tmp_path, f"model:\n  base: {tmp_path / 'empty-model'}\ndata:\n  train: {train_file}\n"))
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text("")
    with pytest.raises(UserError, match="eval.beir: .* has no queries.jsonl"):
        load_recipe(write(tmp_path, f"data:\n  train: {train_file}\neval:\n  beir: {tmp_path / 'beir'}\n"))


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"recipe.yaml:3: mapping values are not allowed here"):
        load_recipe(write(tmp_path, "train:\n  lr: 0.1\n    batch_size: 4\n"))


@pytest.mark.parametrize("item", ["loss.matryoshka_dims=[384, 256", "train.lr={1e-5", "lora.enabled='yes"])
def test_a_yaml_error_in_set_is_reported(item):
    # before: the text was kept as a string, and the message (if any) spoke of a type, not of the typo
    key = item.partition("=")[0]
    with pytest.raises(UserError, match=rf"^--set {key}: '.*' is not valid YAML \(.+\)$"):
        load_recipe(None, [item], check_files=False)


def test_overrides(tmp_path, train_file):
    recipe = load_recipe(
        write(tmp_path, f"data:\n  train: {train_file}\n"),
        ["train.lr=1e-5", "loss.matryoshka_dims=[384,256]", "lora.enabled=true", "model.query_prefix=query: ", "output=out"],
    )
    assert recipe.train.lr == 1e-5
    assert recipe.loss.matryoshka_dims == [384, 256]
    assert recipe.lora.enabled is True
    assert recipe.model.query_prefix == "query: "
    with pytest.raises(UserError, match="--set expects KEY=VALUE"):
        load_recipe(None, ["train.lr"], check_files=False)
    with pytest.raises(UserError, match="did you mean 'train.batch_size'"):
        load_recipe(None, ["train.batchsize=4"], check_files=False)
    with pytest.raises(UserError, match="'output' is a value, not a section"):
        load_recipe(None, ["output.x=1"], check_files=False)


def test_saved_recipe_loads_back_identical(tmp_path, train_file):
    recipe = load_recipe(None, [f"data.train={train_file}", "loss.matryoshka_dims=[32,16]", "train.lr=3e-4"])
    save_recipe(recipe, tmp_path / "saved.yaml")
    assert load_recipe(tmp_path / "saved.yaml") == recipe


def test_cli_bad_recipe_exits_2_with_one_line(tmp_path):
    path = write(tmp_path, "train:\n  lrr: 0.1\n")
    done = subprocess.run([sys.executable, "-m", "distill.cli", "train", str(path)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {path}: unknown key 'train.lrr' (did you mean 'train.lr'?)"]


def test_help_does_not_import_torch():
    code = "import sys, distill.cli; assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
