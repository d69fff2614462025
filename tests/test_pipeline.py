"""`synthgen pipeline` end to end on ADI: real stages, real models, every artifact, invalidation, one-line errors.

The tiny random Llama writes noise, so generation uses a template whose prefill is already a whole answer (the
model still runs on every prompt); the relabel judges and the students are real (MiniLM, or a tiny BERT where
only the bookkeeping is under test).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import shared_dataset
from synthgen.cli import app
from synthgen.pipeline import DEFAULT_MAX_PASSAGES, DEFAULT_TIME_BUDGET, sample_limits
from synthgen.records import Passage, Query, TrainingExample, read_records
from synthgen.rundir import write_manifest_section
from test_generate_cli import CORPUS

KNOWN_ANSWER = """[[system]]
Test prompt.
[[user]]
Passage: {{ passage }}
Query form: {{ form }}
[[assistant]]
{"task": "find {{ form }}", "query": "{{ (form ~ ' ' ~ title.split()[:6] | join(' ')) | replace('"', '') }}"}
"""
# Small, fast settings: a few dozen examples, a few steps, evaluation at two Matryoshka sizes.
SMALL_RECIPE = ["data.dev_size=8", "train.batch_size=8", "train.max_steps=2", "train.checkpoint_every=100",
                "eval.every=0", "model.max_passage_length=128", "eval.batch_size=32"]


def small_recipe(dev_set: bool = False) -> list[str]:
    """SMALL_RECIPE as --set options; with --dev-passages the pipeline sets the dev keys itself, so they are left out."""
    return [x for item in SMALL_RECIPE if not (dev_set and item.startswith(("data.dev", "eval.every")))
            for x in ("--set", item)]


def pipeline(*args: str) -> float:
    """The command in-process (typer's own parsing); returns its wall seconds."""
    started = time.perf_counter()
    app(["pipeline", *args], standalone_mode=False)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def adi() -> Path:
    return shared_dataset("adi")


@pytest.fixture(scope="module")
def common(adi, tiny_llm_path, tmp_path_factory) -> list[str]:
    return corpus_args(adi / "corpus.jsonl", tiny_llm_path, tmp_path_factory.mktemp("pipeline-common"))


def corpus_args(corpus: Path, tiny_llm_path, folder: Path) -> list[str]:
    """The tiny LLM with a known answer, a cache in `folder`: the options every pipeline test starts from."""
    template = folder / "known.j2"
    template.write_text(KNOWN_ANSWER)
    return ["--corpus", str(corpus), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(template),
            "--max-tokens", "8", "--cache-dir", str(folder / "cache"), "--quiet"]


@pytest.fixture(scope="module")
def whole_run(common, adi, tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "run"
    seconds = pipeline(*common, "--out", str(run), "--max-passages", "30", "--keyphrase-queries", "1", "--eval", str(adi),
                       "--dims", "384,128",
                       *small_recipe())
    return run, seconds


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_every_artifact_of_a_whole_run(whole_run, adi):
    run, seconds = whole_run
    passages = list(read_records(run / "passages.jsonl", Passage))
    queries = list(read_records(run / "queries.jsonl", Query))
    examples = list(read_records(run / "train.jsonl", TrainingExample))
    assert len(passages) == 82  # ADI's documents, one passage each
    llm = [q for q in queries if q.form != "keyphrases"]
    assert len(llm) == 30 and len({q.passage_id for q in llm}) == 30
    # then a keyphrase query for each of as many passages, the first of the same sample: the LLM's passages
    assert [q.passage_id for q in queries[30:]] == [q.passage_id for q in llm] and len(queries) == 60
    ids = {p.id for p in passages}
    assert all(q.passage_id in ids for q in queries)
    # relabel leaves out the quarter of the LLM's queries least likely given their own passage (InPars' filter)
    assert {ex.query for ex in examples} <= {q.query for q in queries} and len(examples) == 60 - 7
    texts = {p.text for p in passages}
    assert all(ex.pos and set(ex.pos) <= texts and set(ex.neg) <= texts for ex in examples)

    m = manifest(run)
    assert m["generate"]["complete"] and m["generate"]["counts"]["written"] == 60
    assert m["generate"]["counts"]["keyphrases"] == 30 and m["generate"]["counts"]["queries_prompted"] == 30
    assert m["relabel"]["identity"]["queries_sha256"] and m["relabel"]["counts"]["written"] == 53
    assert m["relabel"]["counts"]["dropped"] == {"unlikely": 7}
    assert m["train"]["complete"] and m["train"]["identity"]["output"] == str((run / "model").resolve())
    section = m["pipeline"]
    assert {name: s["status"] for name, s in section["stages"].items()} == dict.fromkeys(("generate", "relabel", "train"), "ran")
    assert section["stages"]["generate"]["counts"] == {"passages": 82, "passages_prompted": 30, "queries_written": 60,
                                                       "keyphrase_queries": 30}
    assert section["stages"]["relabel"]["counts"]["training_examples"] == 53
    train = section["stages"]["train"]["counts"]
    assert train["training_examples"] + train["dev_examples"] == 53 and train["steps"] == m["train"]["steps"] > 0
    assert 0 < sum(s["seconds"] for s in section["stages"].values()) <= section["wall_seconds"] <= seconds
    # what each stage cost stays in the manifest for a later run that skips it (bench_pipeline adds them up)
    assert 0 < m["train"]["train_seconds"] <= m["train"]["wall_seconds"] <= section["stages"]["train"]["seconds"]

    table = section["eval"]
    assert table["queries"] == 35 and set(table["dims"]) == {"384", "128"}
    # evaluation encoded the base's and the trained model's passages (128 tokens: not relabel's cache) and timed it
    assert 0 < table["encode_seconds"] < m["train"]["wall_seconds"]
    for dim in ("384", "128"):
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            pair = table["dims"][dim][metric]
            assert 0 < pair["base"] <= 1 and 0 < pair["trained"] <= 1
    # the base is the bundled MiniLM, whose zero-shot ADI nDCG@10 is known (../shared/README.md: 0.498 in fp32);
    # the run evaluates in bf16 where the CPU has it, whose rounding differs between CPUs (0.4940 on an AMX one)
    assert table["dims"]["384"]["ndcg@10"]["base"] == pytest.approx(0.498, abs=0.01)

    report = (run / "report.md").read_text()
    assert "| generate | ran |" in report and "| train | ran |" in report and "Keyphrase queries (no LLM): 1 per" in report
    assert section["judge_keyphrases"] and "judged like the LLM's" in report
    assert f"{table['dims']['128']['ndcg@10']['trained']:.4f}" in report
    assert (run / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "plot.png").stat().st_size > 10_000

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(run / "model"), device="cpu")
    vectors = model.encode(["a query about indexing", "another"], convert_to_numpy=True)
    assert vectors.shape == (2, 384) and abs(float((vectors[0] ** 2).sum()) - 1) < 1e-3


def test_invalidation_reruns_exactly_the_stages_whose_inputs_changed(common, tiny_bert_path, tmp_path):
    run = tmp_path / "run"
    base = [*common, "--out", str(run), "--max-passages", "20", "--keyphrase-queries", "0", "--set", f"model.base={tiny_bert_path}",
            *small_recipe()]

    def statuses() -> dict[str, str]:
        return {name: s["status"] for name, s in manifest(run)["pipeline"]["stages"].items()}

    pipeline(*base)
    assert statuses() == {"generate": "ran", "relabel": "ran", "train": "ran"}
    first = {name: (run / name).read_bytes() for name in ("queries.jsonl", "train.jsonl")}
    trained = manifest(run)["train"]

    model_files = {p: p.stat().st_mtime_ns for p in (run / "model").rglob("*")}
    pipeline(*base)
    assert statuses() == {"generate": "skipped", "relabel": "skipped", "train": "skipped"}
    assert manifest(run)["train"] == trained
    assert {p: p.stat().st_mtime_ns for p in (run / "model").rglob("*")} == model_files  # nothing trained again

    pipeline(*base, "--set", "train.lr=1e-4")
    assert statuses() == {"generate": "skipped", "relabel": "skipped", "train": "ran"}
    assert manifest(run)["train"]["identity"]["recipe_sha256"] != trained["identity"]["recipe_sha256"]
    assert json.loads((run / "model" / "training.json").read_text())["fingerprint"] == manifest(run)["train"]["identity"]["recipe_sha256"]

    regenerated = ("--set", "train.lr=1e-4", "--queries-per-passage", "2", "--forms", "question,claim")
    pipeline(*base, *regenerated)
    assert statuses() == {"generate": "ran", "relabel": "ran", "train": "ran"}
    queries = list(read_records(run / "queries.jsonl", Query))
    assert len(queries) == 40 and {q.id.rsplit("@", 1)[1] for q in queries} == {"0", "1"}
    assert (run / "train.jsonl").read_bytes() != first["train.jsonl"]
    assert manifest(run)["generate"]["identity"]["options"]["queries_per_passage"] == 2
    assert manifest(run)["generate"]["identity"]["options"]["forms"] == ["question", "claim"]
    assert {q.form for q in queries} == {"question", "claim"}  # a passage's two queries take both forms

    # What a kill during generate's last batch leaves: its queries written, its progress line not, the stage open.
    progress = run / "generate.progress.jsonl"
    progress.write_text("".join(progress.read_text().splitlines(keepends=True)[:-1]))
    section = manifest(run)["generate"]
    write_manifest_section(run, "generate", {**section, "complete": False})
    finished = {name: (run / name).read_bytes() for name in ("queries.jsonl", "train.jsonl")}
    pipeline(*base, *regenerated)
    assert statuses() == {"generate": "ran", "relabel": "skipped", "train": "skipped"}  # resumed: same queries
    assert {name: (run / name).read_bytes() for name in finished} == finished
    assert manifest(run)["generate"]["counts"] == section["counts"]

    # A smaller sample is a prefix of the same one: its finished queries are kept, none is written twice.
    before = list(read_records(run / "queries.jsonl", Query))
    smaller = [("10" if x == "20" else x) for x in base]
    pipeline(*smaller, *regenerated)
    assert statuses()["generate"] == "ran"
    after = list(read_records(run / "queries.jsonl", Query))
    kept_passages = {q.passage_id for q in after}
    assert 0 < len(kept_passages) <= 10
    assert after == [q for q in before if q.passage_id in kept_passages]

    # Keyphrase queries are added, and taken away, without the LLM's work being redone.
    llm_batches = progress.read_text()
    pipeline(*smaller, *regenerated, "--keyphrase-queries", "1")  # the last value of an option counts
    assert statuses() == {"generate": "ran", "relabel": "ran", "train": "ran"}
    with_keyphrases = list(read_records(run / "queries.jsonl", Query))
    assert with_keyphrases[: len(after)] == after and progress.read_text().startswith(llm_batches)
    assert {q.form for q in with_keyphrases[len(after):]} == {"keyphrases"} and len(with_keyphrases) == len(after) + 10
    assert manifest(run)["relabel"]["counts"]["llm_judged_queries"] == len(with_keyphrases)
    pipeline(*smaller, *regenerated, "--keyphrase-queries", "1", "--no-judge-keyphrases")  # the retrievers rank them
    assert statuses() == {"generate": "skipped", "relabel": "ran", "train": "ran"}
    assert manifest(run)["relabel"]["counts"]["llm_judged_queries"] == len(after)
    assert "judged by the retrievers alone" in (run / "report.md").read_text()
    pipeline(*smaller, *regenerated)
    assert statuses()["generate"] == "ran"
    assert list(read_records(run / "queries.jsonl", Query)) == after and progress.read_text() == llm_batches


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corpus", "nowhere"], "corpus not found: nowhere"),
        (["--set", "train.lrr=1e-5"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        (["--eval", "."], "has no corpus.jsonl (expected a BEIR folder)"),
        (["--judges", "ql,oracle"], "oracle"),
        (["--forms", "claim,claim"], "--forms must name distinct forms"),
        (["--forms", "claim,poem"], "poem"),
        (["--keyphrase-queries", "-1"], "--keyphrase-queries must be 0 or more"),
        (["--set", "data.train=x.jsonl"], "--set data.train: the pipeline sets it"),
        (["--dims", "384,x"], "eval.dims[1] must be a whole number"),
        (["--dims", "384,512"], "--dims 512 is larger than the embedding size of all-MiniLM-L6-v2 (384)"),
        (["--executor", "ray", "--tensor-parallel", "2"], "--tensor-parallel needs a vLLM engine (--llm vllm:PATH)"),
        (["--time-budget", "0"], "--time-budget must be more than 0 minutes, not 0"),
        (["--dev-passages", "-1"], "--dev-passages must be 0 or more, not -1"),
        (["--dev-passages", "5", "--set", "eval.every=3"], "--set eval.every: the pipeline sets it"),
        (["--choose-keyphrases"], "--choose-keyphrases needs --dev-passages N"),
        (["--choose-keyphrases", "--dev-passages", "5", "--keyphrase-queries", "0"], "no keyphrase records to choose"),
        (["--choose-keyphrases", "--dev-passages", "5"], "too short for keyphrase queries by default"),
        (["--choose-keyphrases", "--dev-passages", "5", "--set", "output=elsewhere"], "--set output: with --choose"),
    ],
)
def test_user_mistakes_are_one_line_errors_before_any_stage(tmp_path, extra, message):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Bees make honey from nectar.")
    args = ["--corpus", str(corpus), "--out", str(tmp_path / "run"), "--llm", "hf:/nonexistent", "--quiet", *extra]
    process = subprocess.run([sys.executable, "-c", "from synthgen.cli import main; main()", "pipeline", *args],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert process.returncode == 2, process.stderr
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and "Traceback" not in process.stderr
    assert not (tmp_path / "run" / "passages.jsonl").exists()  # nothing ran


def test_dev_passages_judge_the_model_on_a_separate_sample(common, tiny_bert_path, tmp_path):
    """--dev-passages: a second sample (seed + 1), LLM queries only, relabeled into dev/, is the dev set of training,
    which compares the saved model with the base on it (a paired interval) and chooses no checkpoint by it."""
    run = tmp_path / "run"
    args = [*common, "--out", str(run), "--max-passages", "20", "--keyphrase-queries", "1", "--dev-passages", "12",
            "--time-budget", "600",
            "--set", f"model.base={tiny_bert_path}", *small_recipe(dev_set=True)]
    pipeline(*args)
    stages = manifest(run)["pipeline"]["stages"]
    assert list(stages) == ["dev generate", "dev relabel", "budget", "generate", "relabel", "train"]
    assert {s["status"] for s in stages.values()} - {"skipped"} == {"ran"}  # generate: the budget's prefix is all
    # the budget counts the dev stages' minutes as spent, and times the encoder for training's dev evaluations
    assert manifest(run)["pipeline"]["time_budget"]["rates"]["encode_seconds"] > 0  # no --eval here
    dev_queries = list(read_records(run / "dev" / "queries.jsonl", Query))
    assert len({q.passage_id for q in dev_queries}) == 12 and all(q.form != "keyphrases" for q in dev_queries)
    train_passages = {q.passage_id for q in read_records(run / "queries.jsonl", Query) if q.form != "keyphrases"}
    assert {q.passage_id for q in dev_queries} != train_passages  # another sample, not the training one's prefix
    dev_records = list(read_records(run / "dev" / "train.jsonl", TrainingExample))
    result = json.loads((run / "model" / "training.json").read_text())
    assert result["data"]["dev_examples"] == len(dev_records) > 0
    assert result["data"]["train_examples"] == len(list(read_records(run / "train.jsonl", TrainingExample)))
    assert result["best_step"] == result["steps"]  # judged at the end only: eval.every 0
    low, high = result["dev_interval"]
    assert low - 1e-6 <= result["best_dev"]["ndcg@10"] - result["base_dev"]["ndcg@10"] <= high + 1e-6
    assert "separate sample of 12 passages" in (run / "report.md").read_text()

    pipeline(*args)  # nothing stale
    assert {s["status"] for s in manifest(run)["pipeline"]["stages"].values()} == {"skipped"}
    pipeline(*[("14" if x == "12" else x) for x in args])  # a larger dev sample: only the dev set and training change
    statuses = {name: s["status"] for name, s in manifest(run)["pipeline"]["stages"].items()}
    assert statuses == {"dev generate": "ran", "dev relabel": "ran", "budget": "skipped", "generate": "skipped",
                        "relabel": "skipped", "train": "ran"}
    assert json.loads((run / "model" / "training.json").read_text())["data"]["dev_examples"] > len(dev_records)


def test_choose_keyphrases_trains_on_the_llm_records_too_and_keeps_the_model_the_dev_set_scores_higher(
        common, tiny_bert_path, tmp_path):
    """--choose-keyphrases: model-keyphrases/ is trained on train.jsonl and model-llm/ on it less its keyphrase
    records, with the run's recipe and dev set; model/ is a copy of whichever scores higher on the dev set (the
    keyphrase mix on a tie)."""
    from synthgen.keyphrases import is_keyphrase_id
    from synthgen.stages.choose import LLM_MODEL, LLM_RECORDS, MIN_DEV_RECORDS, MIXED_MODEL

    run = tmp_path / "run"
    args = [*common, "--out", str(run), "--max-passages", "20", "--keyphrase-queries", "1", "--dev-passages", "50",
            "--choose-keyphrases", "--set", f"model.base={tiny_bert_path}",
            *small_recipe(dev_set=True)]
    pipeline(*args)
    section = manifest(run)["pipeline"]
    assert list(section["stages"]) == ["dev generate", "dev relabel", "generate", "relabel", "train", "choose"]
    records = list(read_records(run / "train.jsonl", TrainingExample))
    llm = [r for r in records if not is_keyphrase_id(r.query_id)]
    assert 0 < len(llm) < len(records)
    assert list(read_records(run / LLM_RECORDS, TrainingExample)) == llm
    mixed, alone = (json.loads((run / folder / "training.json").read_text()) for folder in (MIXED_MODEL, LLM_MODEL))
    assert alone["data"]["train_examples"] == len(llm) and mixed["data"]["train_examples"] == len(records)
    assert alone["data"]["dev_examples"] == mixed["data"]["dev_examples"] >= MIN_DEV_RECORDS  # one dev set judges both
    choice = section["choice"]
    assert (choice["keyphrases"], choice["llm"]) == (mixed["best_dev"]["ndcg@10"], alone["best_dev"]["ndcg@10"])
    kept = LLM_MODEL if alone["best_dev"]["ndcg@10"] > mixed["best_dev"]["ndcg@10"] else MIXED_MODEL
    assert choice["chosen"] == str((run / kept).resolve()) and section["model"] == str((run / "model").resolve())
    for name in ("model.safetensors", "training.json", "config.json"):  # model/ is the kept one, where it always is
        assert (run / "model" / name).read_bytes() == (run / kept / name).read_bytes()
    assert section["dev"]["trained"] == (alone if kept == LLM_MODEL else mixed)["best_dev"]
    assert "--choose-keyphrases" in (run / "report.md").read_text()

    copied = (run / "model" / "model.safetensors").stat().st_mtime_ns
    pipeline(*args)  # nothing stale, and the same choice read back, its copy left as it is
    again = manifest(run)["pipeline"]
    assert {s["status"] for s in again["stages"].values()} == {"skipped"} and again["choice"] == choice
    assert (run / "model" / "model.safetensors").stat().st_mtime_ns == copied


def test_a_dev_set_without_records_leaves_the_run_without_one(tiny_llm_path, tiny_bert_path, tmp_path):
    """Three short notes: the known answer's query (its form and the file's title, a number) is filtered out, so
    only keyphrase queries train. The dev set (--dev-passages 100), LLM queries only, is then empty: the run goes on
    without it, says so, and trains one model where model/ always is."""
    corpus = tmp_path / "notes"
    corpus.mkdir()
    for i, text in enumerate(["Bees make honey from nectar collected from flowers in the summer.",
                              "Sourdough bread rises with wild yeast and lactic acid bacteria over many hours.",
                              "A hive keeps its queen warm through winter by clustering worker bees."]):
        (corpus / f"{i}.txt").write_text(text)
    run = tmp_path / "run"
    pipeline(*corpus_args(corpus, tiny_llm_path, tmp_path), "--out", str(run), "--max-passages", "3",
             "--keyphrase-queries", "1",  # named: passages this short get none by default
             "--dev-passages", "100", "--choose-keyphrases", "--set", f"model.base={tiny_bert_path}",
             *small_recipe(dev_set=True))
    section = manifest(run)["pipeline"]
    assert list(section["stages"]) == ["dev generate", "generate", "relabel", "train"]
    assert not list(read_records(run / "dev" / "queries.jsonl", Query))
    assert section["choice"] is None and not section["dev"]["base"]
    assert manifest(run)["train"]["identity"]["output"] == str((run / "model").resolve())
    assert "dev_sha256" not in manifest(run)["train"]["identity"]
    assert "the dev set (dev/) has no records" in (run / "report.md").read_text()
    assert (run / "model" / "model.safetensors").is_file() and not (run / "model-keyphrases").exists()


def test_a_dev_set_too_small_to_choose_keeps_every_record(tiny_llm_path, tiny_bert_path, tmp_path):
    """The example corpus' 22 passages give a dev set of fewer records than a choice needs (MIN_DEV_RECORDS): the
    keyphrase mix is kept, trained once, and the report says why instead of how the dev set chose."""
    from synthgen.stages.choose import LLM_MODEL, MIN_DEV_RECORDS, MIXED_MODEL

    run = tmp_path / "run"
    pipeline(*corpus_args(CORPUS, tiny_llm_path, tmp_path), "--out", str(run), "--max-passages", "6",
             "--keyphrase-queries", "1", "--dev-passages", "22", "--choose-keyphrases", "--set", f"model.base={tiny_bert_path}",
             *small_recipe(dev_set=True))
    dev_records = len(list(read_records(run / "dev" / "train.jsonl", TrainingExample)))
    assert 0 < dev_records < MIN_DEV_RECORDS
    report = (run / "report.md").read_text()
    assert f"{dev_records} dev records, fewer than the {MIN_DEV_RECORDS} a choice needs: nothing to choose" in report
    assert "The dev set chose" not in report and not (run / LLM_MODEL).exists()
    assert (run / "model" / "training.json").read_text() == (run / MIXED_MODEL / "training.json").read_text()


def test_dev_slice_shrinks_to_fit_a_small_corpus(tmp_path):
    from distill.recipe import load_recipe
    from synthgen.stages.train import bundled_recipe, fit_dev_size

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"query": f"q{i}", "pos": [f"p{i}"]}) + "\n" for i in range(22)))
    recipe = load_recipe(bundled_recipe(), [f"data.train={train}", "data.dev_size=100"])
    assert fit_dev_size(recipe).data.dev_size == 5
    bundled = load_recipe(bundled_recipe(), [f"data.train={train}"])  # holds out nothing: left as it is
    assert bundled.data.dev_size == 0 and fit_dev_size(bundled) == bundled
    roomy = load_recipe(bundled_recipe(), [f"data.train={train}", "data.dev_size=10"])
    assert fit_dev_size(roomy) == roomy


def test_a_time_budget_extends_the_sample_it_measured_on(common, adi, tiny_bert_path, tmp_path):
    """82 ADI passages: the budget stage generates and relabels the first 64 (synthgen.budget.CALIBRATION_PASSAGES)
    and probes training, then a roomy budget takes all 82 and a tight one stops at the 64 it measured on; either
    way no generated query or judgment is lost."""
    from synthgen.budget import CALIBRATION_PASSAGES
    from synthgen.lock import lock_path
    from synthgen.stages.budget import PROBE, busy_warning

    base = [*common, "--max-passages", "82", "--keyphrase-queries", "1", "--set", f"model.base={tiny_bert_path}",
            *small_recipe()]
    plain, roomy, tight = tmp_path / "plain", tmp_path / "roomy", tmp_path / "tight"

    def statuses(run: Path) -> dict[str, str]:
        return {name: s["status"] for name, s in manifest(run)["pipeline"]["stages"].items()}

    pipeline(*base, "--out", str(plain))
    pipeline(*base, "--out", str(roomy), "--time-budget", "600", "--eval", str(adi))
    chosen = manifest(roomy)["pipeline"]["time_budget"]
    assert chosen["calibration_passages"] == CALIBRATION_PASSAGES < 82 and chosen["passages"] == 82
    rates = chosen["rates"]
    assert min(rates["prompt_seconds"], rates["pair_seconds"], rates["example_seconds"], rates["encode_seconds"]) > 0
    assert rates["pairs_per_query"] >= 1  # the seed, and candidates above the judge depth
    assert statuses(roomy) == {"budget": "ran", "generate": "ran", "relabel": "ran", "train": "ran"}
    assert manifest(roomy)["generate"]["config"]["max_passages"] == 82
    assert not (roomy / PROBE).exists() and not lock_path(roomy / PROBE).exists()  # the probe leaves nothing
    # the prefix extended, its keyphrase queries written again: the same file as one run of 82 without a budget
    assert (roomy / "queries.jsonl").read_bytes() == (plain / "queries.jsonl").read_bytes()
    assert manifest(roomy)["relabel"]["counts"]["llm_pairs_reused"] > 0  # the prefix's judgments
    # and the same choices from the judgments (their scores may differ in the last digits: other batches)
    def chosen(run: Path) -> list:
        return [(e.query_id, e.pos_ids, e.neg_ids) for e in read_records(run / "train.jsonl", TrainingExample)]

    assert chosen(roomy) == chosen(plain)
    assert "`--max-passages 82` repeats this sample" in (roomy / "report.md").read_text()
    # what other processes took of the CPUs while it measured (the test suite may run beside other work): the
    # report warns exactly when that share passes the threshold
    share = manifest(roomy)["budget"]["others_cpu_share"]
    assert share is None or 0 <= share <= 1
    warning, report = busy_warning(manifest(roomy)["budget"]), (roomy / "report.md").read_text()
    assert f"**Warning:** {warning}" in report if warning else "other processes took" not in report

    pipeline(*base, "--out", str(roomy), "--time-budget", "600", "--eval", str(adi))  # resumed: the choice is kept
    assert set(statuses(roomy).values()) == {"skipped"}

    pipeline(*base, "--out", str(tight), "--time-budget", "0.01")
    chosen = manifest(tight)["pipeline"]["time_budget"]
    assert chosen["passages"] == CALIBRATION_PASSAGES and chosen["projected_total_minutes"] > 0.01
    assert "over the budget already" in (tight / "report.md").read_text()
    # the prefix is all it takes: generated and relabeled while measuring, so those stages are current
    assert statuses(tight) == {"budget": "ran", "generate": "skipped", "relabel": "skipped", "train": "ran"}
    llm = [q for q in read_records(tight / "queries.jsonl", Query) if q.form != "keyphrases"]
    assert llm == [q for q in read_records(plain / "queries.jsonl", Query) if q.form != "keyphrases"][: len(llm)]
    assert len({q.passage_id for q in llm}) == CALIBRATION_PASSAGES

    # a folder already holding more of the sample measures on all of it: a budget never cuts finished work
    queries = (plain / "queries.jsonl").read_bytes()
    pipeline(*base, "--out", str(plain), "--time-budget", "0.01")
    assert manifest(plain)["pipeline"]["time_budget"]["calibration_passages"] == 82
    # all its judgments reused, nothing judged now: judging's rate comes from the run that judged them
    assert manifest(plain)["pipeline"]["time_budget"]["rates"]["pair_seconds"] > 0
    assert (plain / "queries.jsonl").read_bytes() == queries


def test_the_default_run_keeps_to_a_time_budget_and_a_named_sample_does_not(tiny_llm_path, tiny_bert_path, tmp_path):
    """Neither --max-passages nor --time-budget: the default sample within the default minutes, measured on this CPU
    by a budget stage first; the options its report names for that sample (--max-passages, and the queries per
    passage that the whole sample decided): exactly that sample, however long, with no budget stage. Both on the
    example corpus that ships in the repository, so CI runs it without ../shared."""
    common = [*corpus_args(CORPUS, tiny_llm_path, tmp_path), "--keyphrase-queries", "0",  # else one LLM query each
              "--set", f"model.base={tiny_bert_path}", *small_recipe()]
    default, named = tmp_path / "default", tmp_path / "named"
    pipeline(*common, "--out", str(default))
    passages = sum(1 for _ in read_records(default / "passages.jsonl", Passage))
    chosen = manifest(default)["pipeline"]["time_budget"]
    assert chosen["minutes"] == DEFAULT_TIME_BUDGET and chosen["limit"] == min(DEFAULT_MAX_PASSAGES, passages)
    assert list(manifest(default)["pipeline"]["stages"]) == ["budget", "generate", "relabel", "train"]
    assert f"Time budget (--time-budget): {DEFAULT_TIME_BUDGET:g} minutes" in (default / "report.md").read_text()

    # what the report says repeats the sample: the 22 passages, and the 8 queries each that the whole sample decided
    report = (default / "report.md").read_text()
    repeat = re.search(r"`(--max-passages [^`]*)` repeats this sample", report).group(1).split()
    assert repeat == ["--max-passages", str(passages), "--queries-per-passage", str(min(8, DEFAULT_MAX_PASSAGES // passages))]
    pipeline(*common, "--out", str(named), *repeat)
    assert manifest(named)["pipeline"]["time_budget"] is None
    assert list(manifest(named)["pipeline"]["stages"]) == ["generate", "relabel", "train"]
    assert "Time budget" not in (named / "report.md").read_text()
    # the whole corpus fits 90 minutes, so the budget chose all of it: the same queries as the repeated sample's
    assert chosen["passages"] == passages
    assert (default / "queries.jsonl").read_bytes() == (named / "queries.jsonl").read_bytes()


@pytest.mark.parametrize("given, expected", [
    ((None, None), (DEFAULT_MAX_PASSAGES, DEFAULT_TIME_BUDGET)),  # neither: the default sample in the default minutes
    ((None, 45.0), (DEFAULT_MAX_PASSAGES, 45.0)),  # minutes alone: as many of the default sample as fit them
    ((640, None), (640, None)),  # a sample alone: exactly it, no budget
    ((640, 45.0), (640, 45.0)),
])
def test_sample_limits_from_what_the_user_named(given, expected):
    assert sample_limits(*given) == expected


@pytest.mark.parametrize("interval, verdict", [
    ([-0.04, -0.01], "below the base beyond the dev queries' noise"),
    ([-0.01, 0.02], "within the dev queries' noise"),
    ([0.01, 0.03], "above the base beyond the dev queries' noise; real test queries have not always confirmed"),
])
def test_the_report_reads_the_dev_interval_by_the_warnings_rule(interval, verdict):
    """report.md names the side of 0 the dev interval lies on, by the rule the warning and eval.keep_base use."""
    from synthgen.report import format_report

    section = {"stages": {}, "model": "run/model", "wall_seconds": 1.0, "eval": None, "warnings": [],
               "dev": {"metric": "ndcg@10", "base": {"ndcg@10": 0.5}, "trained": {"ndcg@10": 0.51}, "interval": interval,
                       "source": "dev/"}}
    assert f"95% interval: {verdict}" in format_report(section)


@pytest.mark.parametrize("count, long, line", [
    (0, 0.035, "Keyphrase queries (no LLM): none; the corpus decided: 4% of its passages have 50 distinct content words"),
    (6, 0.963, "Keyphrase queries (no LLM): 6 per passage given to the LLM (--keyphrase-queries; 0 turns them off; "
               "the corpus decided: 96% of its passages"),
    (3, None, "Keyphrase queries (no LLM): 3 per passage given to the LLM (--keyphrase-queries; 0 turns them off), "),
])
def test_the_report_says_how_many_keyphrase_queries_and_whether_the_corpus_decided(count, long, line):
    from synthgen.report import format_report

    section = {"stages": {}, "model": "run/model", "wall_seconds": 1.0, "eval": None, "warnings": [],
               "dev": {"metric": "ndcg@10", "base": None, "trained": None, "source": ""},
               "keyphrase_queries": count, "long_passages": long}
    report = format_report(section)
    assert line in report and report.count("Keyphrase queries") == 1


@pytest.mark.parametrize("per_passage, decided, said", [(8, True, True), (1, True, False), (8, False, False)])
def test_the_report_says_when_a_small_corpus_got_several_llm_queries_per_passage(per_passage, decided, said):
    from synthgen.report import format_report

    section = {"stages": {}, "model": "run/model", "wall_seconds": 1.0, "eval": None, "warnings": [],
               "dev": {"metric": "ndcg@10", "base": None, "trained": None, "source": ""},
               "queries_per_passage": per_passage, "queries_per_passage_decided": decided}
    line = f"LLM queries: {per_passage} per passage, each in another form: the corpus has fewer passages than the sample"
    assert (line in format_report(section)) == said  # a number the user named, or one each, needs no word
