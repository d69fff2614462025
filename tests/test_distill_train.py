"""`train(recipe)` end to end on a tiny BERT: outputs, keep-best, resume after a kill, warnings, LoRA, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

from distill.recipe import load_recipe
from distill.train import SUMMARY, TrainResult, train
from synthgen.errors import UserError

TOPICS = {
    "protein": "protein folding amino acid chain structure",
    "solar": "solar panel photovoltaic light energy",
    "river": "river fish water current ecology",
    "jazz": "jazz saxophone improvisation swing music",
    "tax": "income tax deduction law return",
    "volcano": "volcano lava eruption magma ash",
    "chess": "chess opening gambit bishop knight",
    "bread": "bread dough yeast oven flour",
}


def records(count: int, flip: bool = False) -> list[dict]:
    """Queries about a topic; the positive is that topic's passage, the negative another topic's.

    With `flip`, positives and negatives swap: a dev set that training on the unflipped records must hurt.
    """
    names = list(TOPICS)
    out = []
    for i in range(count):
        topic, other = names[i % len(names)], names[(i + 3) % len(names)]
        words = TOPICS[topic].split()
        pos = f"{TOPICS[topic]} note {i}"
        neg = f"{TOPICS[other]} note {i}"
        out.append({
            "query": f"{words[i % 5]} {words[(i + 2) % 5]} {i}",
            "pos": [neg if flip else pos], "neg": [pos if flip else neg],
            "pos_ids": [f"{'o' if flip else 't'}{i}"], "neg_ids": [f"{'t' if flip else 'o'}{i}"],
            "pos_scores": [0.9], "neg_scores": [0.1], "task": "find the topic",
        })
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_recipe(tmp_path: Path, base: Path, output: str, *extra: str):
    train_file = write_jsonl(tmp_path / "train.jsonl", records(48))
    return load_recipe(None, [
        f"model.base={base}", "model.max_query_length=16", "model.max_passage_length=32",
        "model.query_prefix=query: ", f"data.train={train_file}", "data.dev_size=8", "data.hard_negatives=1",
        "train.batch_size=8", "train.mini_batch_size=6", "train.lr=1e-3", "train.max_steps=6", "train.warmup_ratio=0",
        "train.checkpoint_every=2", "eval.every=3", f"output={tmp_path / output}", *extra,
    ])


def log_lines(folder: Path, keep_timing: bool = False) -> list[dict]:
    lines = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    if not keep_timing:
        for line in lines:
            line.pop("elapsed_s", None)
            line.pop("examples_per_s", None)
    return lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_path):
    tmp = tmp_path_factory.mktemp("trained")
    recipe = make_recipe(tmp, tiny_bert_path, "model", "loss.distill=margin_mse", "loss.distill_weight=0.5",
                         "loss.matryoshka_dims=[32,16]")
    return recipe, train(recipe, progress=False)


def test_outputs_of_a_run(trained):
    recipe, result = trained
    out = Path(result.output_dir)
    assert result.steps == 6 and result.data["train_examples"] == 40 and result.data["dev_examples"] == 8
    lines = log_lines(out)
    assert [line["step"] for line in lines if line["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "contrastive", "distill", "lr", "epoch"} <= line.keys() for line in lines if line["event"] == "train")
    dev = [line for line in lines if line["event"] == "dev"]
    assert [line["step"] for line in dev] == [0, 3, 6] and dev[0]["base"] is True
    assert result.base_dev == {k: v for k, v in dev[0].items() if k not in ("event", "step", "base")}
    best = [line for line in dev[1:] if line["best"]][-1]
    assert result.best_step == best["step"] and result.best_dev["ndcg@10"] == best["ndcg@10"]
    assert result.beats_base == (result.best_dev["ndcg@10"] > result.base_dev["ndcg@10"])
    assert not (out / "train_state").exists()
    assert load_recipe(out / "recipe.yaml") == recipe
    assert TrainResult(**json.loads((out / SUMMARY).read_text())) == result
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and "| ndcg@10 |" in card and "train examples | 40" in card and "margin_mse" in card


def test_saved_model_is_the_best_checkpoint(trained):
    """Recompute the dev metrics from the saved folder through SentenceTransformer: they are the best step's."""
    from distill.data import build_dataset, dev_pool, read_examples, split_dev
    from distill.evaluate import search
    from distill.metrics import mean_metrics

    recipe, result = trained
    _, dev = split_dev(read_examples(Path(recipe.data.train)), recipe.data.dev_size, recipe.train.seed)
    data = build_dataset([], dev)  # texts without prefixes: encode_query adds the saved prompt
    queries, passages, relevant = dev_pool(data.dev)
    model = SentenceTransformer(result.output_dir, device="cpu")
    q = model.encode_query([data.queries[i] for i in queries], convert_to_tensor=True)
    p = model.encode_document([data.passages[i] for i in passages], convert_to_tensor=True)
    runs = {str(qr): [str(passages[i]) for i in row] for qr, row in zip(queries, search(q, p))}
    metrics = mean_metrics(runs, {str(qr): {str(pr): 1 for pr in relevant[qr]} for qr in queries})
    assert metrics == pytest.approx(result.best_dev, abs=2e-6)


def test_finished_folder_is_returned_not_retrained(trained, tmp_path):
    recipe, result = trained
    stamp = (Path(result.output_dir) / "model.safetensors").stat().st_mtime_ns
    assert train(recipe, progress=False) == result
    assert (Path(result.output_dir) / "model.safetensors").stat().st_mtime_ns == stamp
    recipe.train.lr = 5e-4
    with pytest.raises(UserError, match="holds a model trained from another recipe"):
        train(recipe, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    recipe.output = str(tmp_path / "busy")
    with pytest.raises(UserError, match="exists and is not empty"):
        train(recipe, progress=False)


# topic batches: the topics come from the starting model, so a resumed run (restored weights) must draw the same
@pytest.mark.parametrize("option", ["loss.distill=kl", "loss.confidence_weights=true"])
def test_options_that_read_the_judges_scores_refuse_records_without_them(tmp_path, tiny_bert_path, option):
    recipe = make_recipe(tmp_path, tiny_bert_path, "model", option)
    unscored = [{k: v for k, v in r.items() if k not in ("pos_scores", "neg_scores")} for r in records(48)]
    write_jsonl(Path(recipe.data.train), unscored)
    with pytest.raises(UserError, match="pos_scores"):
        train(recipe, progress=False)


@pytest.mark.parametrize("options", [[], ["data.topic_batches=true", "loss.false_negative_margin=0.1"]])
def test_resume_after_a_kill_ends_as_an_uninterrupted_run(tmp_path, tiny_bert_path, options):
    whole = train(make_recipe(tmp_path, tiny_bert_path, "whole", "train.max_steps=5", "eval.every=2", *options), progress=False)

    def killed(step: int) -> None:
        if step == 3:  # the last checkpoint is step 2: step 3 is lost and must be redone
            raise KeyboardInterrupt

    recipe = make_recipe(tmp_path, tiny_bert_path, "resumed", "train.max_steps=5", "eval.every=2", *options)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=killed)
    assert (tmp_path / "resumed" / "train_state" / "ckpt-00000002").is_dir()
    resumed = train(recipe, progress=False)
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)
    assert log_lines(tmp_path / "whole") == log_lines(tmp_path / "resumed")
    assert (resumed.best_step, resumed.best_dev, resumed.base_dev) == (whole.best_step, whole.best_dev, whole.base_dev)


def test_topic_size_makes_fewer_broader_topics(tmp_path, tiny_bert_path, monkeypatch):
    import synthgen.sampling

    asked, real = [], synthgen.sampling.kmeans_clusters
    def counting(x, k, seed):
        asked.append(k)
        labels = real(x, k, seed)
        assert len(set(labels)) <= k and len(labels) == len(x)
        return labels

    monkeypatch.setattr(synthgen.sampling, "kmeans_clusters", counting)
    for size in (1, 2, 5):  # 40 training records (48 less 8 for dev), batches of 8
        train(make_recipe(tmp_path, tiny_bert_path, f"size{size}", "train.max_steps=1", "data.topic_batches=true",
                          f"data.topic_size={size}"), progress=False)
    assert asked == [5, 3, 1]


def test_a_damaged_log_line_costs_that_line_only_on_resume(tmp_path, tiny_bert_path):
    whole = make_recipe(tmp_path, tiny_bert_path, "whole", "train.max_steps=5", "eval.every=2", "train.log_every=1")
    train(whole, progress=False)

    def killed(step: int) -> None:
        if step == 5:  # the last checkpoint is step 4
            raise KeyboardInterrupt

    recipe = make_recipe(tmp_path, tiny_bert_path, "resumed", "train.max_steps=5", "eval.every=2", "train.log_every=1")
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=killed)
    log = tmp_path / "resumed" / "log.jsonl"
    rows = log.read_text().splitlines()
    damaged = next(i for i, row in enumerate(rows) if json.loads(row)["step"] == 2)
    rows[damaged] = rows[damaged][: len(rows[damaged]) // 2]  # a line cut in the middle of the file
    log.write_text("\n".join(rows) + "\n")
    train(recipe, progress=False)
    expected = log_lines(tmp_path / "whole")
    del expected[damaged]
    assert log_lines(tmp_path / "resumed") == expected  # every later line kept (before: all dropped)

    from synthgen.report import plot

    result = TrainResult(**json.loads((tmp_path / "resumed" / SUMMARY).read_text()))
    log.write_text(log.read_text() + "{not json\n[1, 2]\n")
    plot(tmp_path / "plot.png", log, result)  # the report's reader skips what it cannot read
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def train_on_a_flipped_dev_set(tmp_path: Path, base: Path, seed: int, dev_count: int, train_settings: str, every: int):
    """`distill train` from the CLI on 48 records, judged on `dev_count` of their queries with the answers swapped."""
    from distill.cli import app

    write_jsonl(tmp_path / "train.jsonl", records(48))
    write_jsonl(tmp_path / "dev.jsonl", records(dev_count, flip=True))
    (tmp_path / "r.yaml").write_text(
        f"model:\n  base: {base}\n  max_query_length: 16\n  max_passage_length: 32\n"
        f"data:\n  train: {tmp_path / 'train.jsonl'}\n  dev: {tmp_path / 'dev.jsonl'}\n  hard_negatives: 1\n"
        f"train:\n  batch_size: 8\n  warmup_ratio: 0\n{train_settings}"
        f"eval:\n  every: {every}\noutput: {tmp_path / 'out'}\n"
    )
    run = CliRunner().invoke(app, ["train", str(tmp_path / "r.yaml"), "--quiet", "--set", f"train.seed={seed}"])
    assert run.exit_code == 0, run.output
    return run, TrainResult(**json.loads((tmp_path / "out" / SUMMARY).read_text()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_warning_when_training_ties_the_base_within_the_noise(tmp_path, tiny_bert_path, seed):
    """Steps of 1e-9 move no embedding far enough to reorder a ranking, so the trained model scores what the base
    scores: it does not beat it, but a tie is no loss beyond the dev queries' noise, so no warning (a point drop
    within the noise was the false alarm of docs/guard.md), whatever the seed."""
    run, result = train_on_a_flipped_dev_set(tmp_path, tiny_bert_path, seed, 16,
                                             "  mini_batch_size: 16\n  lr: 1.0e-9\n  max_steps: 8\n", every=4)
    assert result.beats_base is False and result.best_dev == result.base_dev
    assert result.dev_interval == [0.0, 0.0] and result.warnings == []
    assert "dev ndcg@10: base" in run.output and "difference +0.00 to +0.00 points" in run.output
    assert "within the dev set's noise" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warning_when_training_is_worse_beyond_the_dev_noise(tmp_path, tiny_bert_path, seed):
    """Trained towards the opposite answers of the dev set (every training query, its answers swapped), the model
    loses on every dev query it moves: a loss beyond the noise, which is warned about (and the model kept:
    eval.keep_base is off)."""
    run, result = train_on_a_flipped_dev_set(tmp_path, tiny_bert_path, seed, 48, "  lr: 3.0e-3\n  max_steps: 12\n", every=0)
    assert result.dev_interval[1] < 0 and result.best_dev["ndcg@10"] < result.base_dev["ndcg@10"]
    assert "worse than the base model on the dev set beyond its noise" in result.warnings[0]
    assert "warning: the trained model is worse than the base model" in run.output
    assert "**Warning:**" in (tmp_path / "out" / "README.md").read_text()


def test_lora_without_dev_set_saves_adapters(tmp_path, tiny_bert_path):
    recipe = make_recipe(tmp_path, tiny_bert_path, "lora", "lora.enabled=true", "lora.r=4", "lora.save=adapters",
                         "data.dev_size=0", "train.max_steps=2", "train.lr=1e-2")
    result = train(recipe, progress=False)
    assert result.best_step is None and result.base_dev is None and result.beats_base is None
    out = Path(result.output_dir)
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    texts = ["protein folding 3"]
    trained = SentenceTransformer(str(out), device="cpu").encode_query(texts, convert_to_tensor=True)
    base = SentenceTransformer(str(tiny_bert_path), device="cpu").encode_query(["query: " + texts[0]], convert_to_tensor=True)
    assert not torch.allclose(trained, base, atol=1e-4)  # the adapters were trained and are applied


def test_a_dev_set_the_base_already_aces_is_named_as_such(tmp_path, tiny_bert_path):
    write_jsonl(tmp_path / "train.jsonl", records(16))
    # one dev query whose only passage is its positive: every model ranks it first, so no gain can show
    write_jsonl(tmp_path / "dev.jsonl", [{"query": "hive frames", "pos": ["a hive has frames"]}])
    recipe = load_recipe(None, [f"model.base={tiny_bert_path}", "model.max_query_length=16", "model.max_passage_length=32",
                                f"data.train={tmp_path / 'train.jsonl'}", f"data.dev={tmp_path / 'dev.jsonl'}",
                                "train.batch_size=8", "train.max_steps=2", "eval.every=0", f"output={tmp_path / 'out'}"])
    result = train(recipe, progress=False)
    assert result.base_dev["ndcg@10"] == 1.0 and result.beats_base is False
    assert "the dev set cannot show a gain" in result.warnings[0]
    assert not any("does not beat the base model" in w for w in result.warnings)


def test_keep_base_saves_the_base_weights_when_the_dev_set_gets_worse(tmp_path, tiny_bert_path):
    from transformers import AutoModel

    write_jsonl(tmp_path / "train.jsonl", records(48))
    write_jsonl(tmp_path / "dev.jsonl", records(48, flip=True))  # every training query, its answers swapped
    recipe = load_recipe(None, [f"model.base={tiny_bert_path}", "model.max_query_length=16", "model.max_passage_length=32",
                                f"data.train={tmp_path / 'train.jsonl'}", f"data.dev={tmp_path / 'dev.jsonl'}",
                                "data.hard_negatives=1", "train.batch_size=8", "train.lr=3e-3", "train.warmup_ratio=0",
                                "train.max_steps=12", "eval.every=0", "eval.keep_base=true", f"output={tmp_path / 'out'}"])
    result = train(recipe, progress=False)
    assert result.beats_base is False and result.best_dev == result.base_dev and result.dev_interval[1] < 0
    assert "worse than the base model on the dev set beyond its noise" in result.warnings[0]
    assert "the base model is saved instead" in result.warnings[0]
    saved = SentenceTransformer(str(tmp_path / "out"), device="cpu")[0].auto_model.state_dict()
    base = AutoModel.from_pretrained(str(tiny_bert_path)).state_dict()
    for name, value in base.items():
        torch.testing.assert_close(saved[name], value)


def test_a_drop_within_the_dev_noise_is_said_not_warned_and_keeps_the_model():
    """The verdict keep_base and the warning act on: a lower mean whose interval holds 0 is not `worse`; the same
    drop on every query is; without per-query values (an older checkpoint) the means decide."""
    from distill.verdict import judge

    base_q = [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3, 0.6]
    mixed = [b + d for b, d in zip(base_q, [-0.3, 0.2, -0.2, 0.1, -0.1, 0.2, -0.1, 0.1])]  # mean -0.0125
    def mean(values: list[float]) -> dict[str, float]:
        return {"ndcg@10": sum(values) / len(values)}

    within = judge("ndcg@10", mean(base_q), mean(mixed), base_q, mixed, 8, keep_base=True)
    assert not within.beats and not within.worse and within.interval[0] < 0 < within.interval[1]
    assert within.warning == "" and "within its noise" in within.note
    lower = [b - 0.1 for b in base_q]
    beyond = judge("ndcg@10", mean(base_q), mean(lower), base_q, lower, 8, keep_base=True)
    assert beyond.worse and beyond.interval[1] < 0 and "the base model is saved instead" in beyond.warning
    old = judge("ndcg@10", mean(base_q), mean(mixed), None, mixed, 8, keep_base=False)
    assert old.worse and old.interval is None and "check on labelled data" in old.warning
    better = judge("ndcg@10", mean(base_q), mean([b + 0.05 for b in base_q]), base_q, [b + 0.05 for b in base_q], 8, True)
    assert better.beats and not better.worse and better.warning == better.note == ""


def test_interpolation_saves_the_point_between_base_and_trained(tmp_path, tiny_bert_path):
    from transformers import AutoModel

    common = ["train.max_steps=3", "train.lr=1e-2", "data.dev_size=0"]
    full = train(make_recipe(tmp_path, tiny_bert_path, "full", *common), progress=False)
    half = train(make_recipe(tmp_path, tiny_bert_path, "half", *common, "train.interpolation=0.5"), progress=False)
    base = AutoModel.from_pretrained(str(tiny_bert_path)).state_dict()
    trained = SentenceTransformer(full.output_dir, device="cpu")[0].auto_model.state_dict()
    mixed = SentenceTransformer(half.output_dir, device="cpu")[0].auto_model.state_dict()
    moved = [n for n, v in base.items() if v.is_floating_point() and not torch.equal(trained[n], v)]
    assert moved
    for name in moved:
        torch.testing.assert_close(mixed[name], (base[name] + trained[name]) / 2, rtol=1e-5, atol=1e-6)


def test_keep_base_does_not_act_on_a_dev_set_that_cannot_show_a_gain(tmp_path, tiny_bert_path):
    from transformers import AutoModel

    write_jsonl(tmp_path / "train.jsonl", records(16))
    write_jsonl(tmp_path / "dev.jsonl", [{"query": "hive frames", "pos": ["a hive has frames"]}])
    recipe = load_recipe(None, [f"model.base={tiny_bert_path}", "model.max_query_length=16", "model.max_passage_length=32",
                                f"data.train={tmp_path / 'train.jsonl'}", f"data.dev={tmp_path / 'dev.jsonl'}",
                                "train.batch_size=8", "train.max_steps=2", "train.lr=1e-2", "eval.every=0",
                                "eval.keep_base=true", f"output={tmp_path / 'out'}"])
    result = train(recipe, progress=False)
    assert result.base_dev["ndcg@10"] == 1.0 and result.beats_base is False
    saved = SentenceTransformer(str(tmp_path / "out"), device="cpu")[0].auto_model.state_dict()
    base = AutoModel.from_pretrained(str(tiny_bert_path)).state_dict()
    assert any(not torch.equal(saved[n], v) for n, v in base.items() if v.is_floating_point())  # the trained model is kept


def test_frozen_embeddings_stay_the_base_while_the_layers_move(tmp_path, tiny_bert_path):
    from transformers import AutoModel

    recipe = make_recipe(tmp_path, tiny_bert_path, "out", "train.max_steps=2", "train.lr=1e-2", "data.dev_size=0",
                         "train.freeze_embeddings=true")
    result = train(recipe, progress=False)
    base = AutoModel.from_pretrained(str(tiny_bert_path)).state_dict()
    saved = SentenceTransformer(result.output_dir, device="cpu")[0].auto_model.state_dict()
    assert torch.equal(saved["embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])
    assert not torch.equal(saved["encoder.layer.0.attention.self.query.weight"], base["encoder.layer.0.attention.self.query.weight"])


def test_layer_decay_scales_each_layers_first_step(tmp_path, tiny_bert_path):
    """Adam's first step moves a weight by about the learning rate whatever its gradient, so each tensor's largest
    move shows the rate its layer got: the top layer the full rate, each one below half of the one above."""
    from transformers import AutoModel

    lr, decay = 1e-3, 0.5
    recipe = make_recipe(tmp_path, tiny_bert_path, "out", "train.max_steps=1", f"train.lr={lr}", "data.dev_size=0",
                         "train.weight_decay=0", "train.precision=fp32", f"train.layer_decay={decay}")
    result = train(recipe, progress=False)
    base = AutoModel.from_pretrained(str(tiny_bert_path)).state_dict()
    saved = SentenceTransformer(result.output_dir, device="cpu")[0].auto_model.state_dict()
    expected = {"encoder.layer.1.": lr, "encoder.layer.0.": lr * decay, "embeddings.": lr * decay**2}
    for prefix, rate in expected.items():
        moves = [(saved[n] - base[n]).abs().max().item() for n in base if n.startswith(prefix) and base[n].ndim == 2]
        assert moves and all(0.9 * rate < m < 1.1 * rate for m in moves), (prefix, rate, moves)


def test_layer_lr_scales_count_layers_down_from_the_top():
    from distill.optimizer import layer_lr_scales

    names = ["0.model.embeddings.word_embeddings.weight", "0.model.encoder.layer.0.output.dense.weight",
             "0.model.encoder.layer.11.output.dense.weight", "0.model.pooler.dense.weight", "2.linear.weight"]
    assert set(layer_lr_scales(names, 1.0).values()) == {1.0}
    scales = layer_lr_scales(names, 0.9)
    assert scales["0.model.encoder.layer.11.output.dense.weight"] == 1.0 and scales["2.linear.weight"] == 1.0
    assert scales["0.model.encoder.layer.0.output.dense.weight"] == pytest.approx(0.9**11)
    assert scales["0.model.embeddings.word_embeddings.weight"] == pytest.approx(0.9**12)
