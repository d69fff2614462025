"""`synthgen relabel` end to end: real embedder, real hf backend on the tiny Llama, files, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relabel_corpus import passages, queries
from synthgen.cli import main
from synthgen.keyphrases import idf, is_keyphrase_id, keyphrase_queries
from synthgen.records import Query, TrainingExample, dumps, read_records


def make_run(folder: Path, extra_queries: int = 0, keyphrases: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    qs = queries()
    if keyphrases:  # what `synthgen generate --keyphrase-queries` adds after the LLM's queries
        qs += keyphrase_queries(passages(), len(passages()), idf(passages()))
    for n in range(extra_queries):  # more queries, so that a run lasts long enough to be killed
        base = qs[n % len(qs)]
        qs.append(Query(f"{base.id}-{n}", base.passage_id, base.task, f"{base.query} variant {n}", base.form))
    (folder / "passages.jsonl").write_text("".join(dumps(p) + "\n" for p in passages()))
    (folder / "queries.jsonl").write_text("".join(dumps(q) + "\n" for q in qs))
    return folder


def cli(args):
    old = sys.argv
    sys.argv = ["synthgen", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = old
    return code


@pytest.fixture
def common(minilm_path, tiny_llm_path, tmp_path):
    return ["--embedder", minilm_path, "--llm", f"hf:{tiny_llm_path}", "--cache-dir", tmp_path / "cache", "--quiet"]


def test_relabel_writes_training_examples_and_manifest(tmp_path, common):
    run = make_run(tmp_path / "run")
    default = ["relabel", "--run", run, *common, "--judges", "ql,yesno,dense,bm25", "--top-k", "6",
               "--judge-depth", "3", "--negatives", "2", "--negative-ranks", "2-6"]
    args = [*default, "--drop-unlikely", "0"]  # every query kept, to check each record
    assert cli(args) == 0
    examples = list(read_records(run / "train.jsonl", TrainingExample))
    assert len(examples) == len(queries())
    by_id = {p.id: p for p in passages()}
    for ex in examples:
        assert ex.pos == [by_id[ex.pos_ids[0]].text] and ex.neg == [by_id[i].text for i in ex.neg_ids]
        assert len(ex.neg_ids) == 2 and ex.seed_id not in ex.neg_ids and ex.pos_ids[0] not in ex.neg_ids
        assert ex.pos_scores[0] > max(ex.neg_scores) and 0 <= min(ex.neg_scores) and ex.pos_scores[0] <= 1
    section = json.loads((run / "manifest.json").read_text())["relabel"]
    counts = section["counts"]
    assert counts["queries"] == 12 and counts["written"] == 12 and counts["dropped"] == {}
    assert counts["llm_pairs_judged"] == 12 * 3  # the seed is retrieved in the top 3 for these queries
    assert 0 <= counts["positive_is_seed_rate"] <= 1
    assert set(counts["judge_top1_agrees_with_fused"]) == {"ql", "yesno", "dense", "bm25"}
    assert section["throughput"]["pairs_per_s"] > 0
    # each passage encoded once (a fresh cache) and the time it took, for the pipeline's share of encoding
    assert section["throughput"]["passages_encoded"] == len(passages()) and section["throughput"]["encode_seconds"] > 0
    assert set(section["prompts"]) == {"judge_passage.j2", "judge_query_likelihood.j2", "judge_relevance.j2"}
    judgments = (run / "judgments.jsonl").read_text().splitlines()
    assert len(judgments) == 12 * 3 * 2  # two LLM judges per pair
    # what judging cost is counted by: each passage a judge read once for all its pairs (the time budget's model)
    assert counts["llm_passages_read"] == len({json.loads(line)["passage_id"] for line in judgments}) < 12 * 3

    first = (run / "train.jsonl").read_text()
    assert cli(args) == 0  # a second run judges nothing again and writes the same records
    again = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert again["llm_pairs_judged"] == again["llm_passages_read"] == 0 and again["llm_pairs_reused"] == 12 * 3
    assert (run / "train.jsonl").read_text() == first
    assert len((run / "judgments.jsonl").read_text().splitlines()) == 12 * 3 * 2

    store = run / "judgments.jsonl"  # one judge's judgment of a pair lost: the pair is judged again, not reused
    store.write_text("".join(store.read_text().splitlines(keepends=True)[:-1]))
    assert cli(args) == 0
    half = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert half["llm_pairs_judged"] == half["llm_passages_read"] == 1 and half["llm_pairs_reused"] == 12 * 3 - 1

    # InPars' filter, on by default with the ql judge: the same judgments, the 3 of 12 queries least likely given
    # their seed passage left out
    assert cli(default) == 0
    counts = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert counts["llm_pairs_judged"] == 0 and counts["written"] == 9 and counts["dropped"] == {"unlikely": 3}
    seed_ql = {(j["query_id"], j["passage_id"]): j["score"] for j in map(json.loads, store.read_text().splitlines())
               if j["judge"] == "ql"}
    least = sorted(queries(), key=lambda q: seed_ql[q.id, q.passage_id])[:3]
    kept = list(read_records(run / "train.jsonl", TrainingExample))
    assert {ex.query_id for ex in kept} == {q.id for q in queries()} - {q.id for q in least}


def test_judging_resumed_goes_on_in_the_dtype_of_the_earlier_judgments(tmp_path, common):
    """"auto" is decided per machine: judgments made in bf16 elsewhere make the rest of the run's bf16 here too."""
    import torch

    from synthgen.llm.hf import resolve_dtype

    run = make_run(tmp_path / "run")
    args = ["relabel", "--run", run, *common, "--judges", "ql,dense,bm25", "--top-k", "6", "--judge-depth", "3"]
    assert cli(args) == 0
    store = run / "judgments.jsonl"
    here = str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    judgments = [json.loads(line) for line in store.read_text().splitlines()]
    assert {j["dtype"] for j in judgments} == {here}
    assert json.loads((run / "manifest.json").read_text())["relabel"]["dtype"] == here
    other = "bfloat16" if here == "float32" else "float32"
    kept = judgments[: len(judgments) // 2]  # the rest is judged again, as after a kill
    store.write_text("".join(json.dumps({**j, "dtype": other}) + "\n" for j in kept))
    assert cli(args) == 0
    judgments = [json.loads(line) for line in store.read_text().splitlines()]
    assert len(judgments) > len(kept) and {j["dtype"] for j in judgments} == {other}
    assert json.loads((run / "manifest.json").read_text())["relabel"]["dtype"] == other
    # judgments this run does not reuse (another LLM's, or other texts') say nothing of what it goes on in
    store.write_text("".join(json.dumps({**j, "key": "stale-" + j["key"]}) + "\n" for j in judgments))
    assert cli(args) == 0
    fresh = [json.loads(line) for line in store.read_text().splitlines()][len(judgments):]
    assert fresh and {j["dtype"] for j in fresh} == {here}
    assert json.loads((run / "manifest.json").read_text())["relabel"]["dtype"] == here


def test_retrieval_judges_alone_need_no_llm(tmp_path, minilm_path):
    run = make_run(tmp_path / "run")
    args = ["relabel", "--run", run, "--embedder", minilm_path, "--cache-dir", tmp_path / "cache", "--quiet",
            "--judges", "dense,bm25", "--llm", "hf:/nonexistent", "--positive", "fused"]
    assert cli(args) == 0  # the --llm is never loaded
    examples = list(read_records(run / "train.jsonl", TrainingExample))
    # the corpus has one clear answer per query, written as its seed
    assert all(ex.pos_ids == [ex.seed_id] for ex in examples)
    assert not (run / "judgments.jsonl").exists()


def test_keyphrase_queries_may_be_left_to_the_retriever_judges(tmp_path, common):
    run = make_run(tmp_path / "run", keyphrases=True)
    keyphrase_ids = {q.id for q in read_records(run / "queries.jsonl", Query) if is_keyphrase_id(q.id)}
    assert len(keyphrase_ids) == 12
    args = ["relabel", "--run", run, *common, "--top-k", "6", "--judge-depth", "3", "--drop-unlikely", "0"]
    assert cli([*args, "--no-judge-keyphrases"]) == 0
    judged = {json.loads(line)["query_id"] for line in (run / "judgments.jsonl").read_text().splitlines()}
    assert judged == {q.id for q in queries()}  # the LLM judged the LLM's queries only
    section = json.loads((run / "manifest.json").read_text())["relabel"]
    assert section["counts"]["llm_judged_queries"] == 12 and section["counts"]["written"] == 24
    assert section["config"]["judge_keyphrases"] is False
    records = {ex.query_id: ex for ex in read_records(run / "train.jsonl", TrainingExample)}
    # a keyphrase query's record is the one the retriever judges alone make of it
    alone = make_run(tmp_path / "alone", keyphrases=True)
    assert cli(["relabel", "--run", alone, *common, "--top-k", "6", "--judges", "dense,bm25"]) == 0
    assert all(ex == records[ex.query_id] for ex in read_records(alone / "train.jsonl", TrainingExample)
               if ex.query_id in keyphrase_ids)

    assert cli([*args, "--judge-keyphrases"]) == 0  # another train.jsonl; the LLM's queries are not judged again
    counts = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert counts["llm_judged_queries"] == 24 and counts["llm_pairs_reused"] == 12 * 3
    assert counts["llm_pairs_judged"] > 0
    judged = {json.loads(line)["query_id"] for line in (run / "judgments.jsonl").read_text().splitlines()}
    assert judged == set(records)


@pytest.mark.parametrize(
    "break_run, message",
    [
        (lambda run: (run / "passages.jsonl").unlink(), "passages.jsonl not found"),
        (lambda run: (run / "queries.jsonl").write_text(""), "has no queries"),
        (lambda run: (run / "queries.jsonl").write_text(
            dumps(Query("x@0", "missing#0", "", "a query", "question")) + "\n"), "queries.jsonl:1: query 'x@0' names passage 'missing#0'"),
        (lambda run: (run / "queries.jsonl").write_text('{"id": "x"\n'), "queries.jsonl:1: malformed JSON"),
        (lambda run: (run / "passages.jsonl").write_text('{"id": "a", "text": "t"}\n{"id": "a", "text": "u"}\n'),
         "passages.jsonl:2: duplicate passage id 'a'"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, break_run, message):
    run = make_run(tmp_path / "run")
    break_run(run)
    assert cli(["relabel", "--run", run, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    for bad in (["--negative-ranks", "20"], ["--judges", "ql,oracle"], ["--margin", "1.5"], ["--judges", "dense2"],
                ["--negative-strategy", "hardest"], ["--judges", "dense,bm25", "--min-agreement", "3"],
                ["--min-agreement", "3", "--no-judge-keyphrases"], ["--drop-unlikely", "1"],
                ["--judges", "dense,bm25", "--drop-unlikely", "0.25"]):
        assert cli(["relabel", "--run", run, "--quiet", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert cli(["relabel", "--run", tmp_path / "nowhere", "--quiet"]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_resume_after_kill_9_loses_nothing(tmp_path, minilm_path, tiny_llm_path):
    cache = tmp_path / "cache"
    opts = ["--embedder", minilm_path, "--llm", f"hf:{tiny_llm_path}", "--cache-dir", cache, "--quiet",
            "--judge-depth", "4", "--top-k", "6", "--batch-pairs", "1"]
    whole = make_run(tmp_path / "whole", extra_queries=12)
    assert cli(["relabel", "--run", whole, *opts]) == 0
    total = len((whole / "judgments.jsonl").read_text().splitlines())

    run = make_run(tmp_path / "killed", extra_queries=12)
    command = [sys.executable, "-c", "from synthgen.cli import main; main()", "relabel", "--run", str(run),
               *map(str, opts)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = run / "judgments.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if store.exists() and len(store.read_bytes().splitlines()) >= 4:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_before = len(store.read_bytes().splitlines())
    assert 0 < done_before < total and not (run / "train.jsonl").exists()

    assert cli(["relabel", "--run", run, *opts]) == 0
    counts = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert counts["llm_pairs_reused"] >= done_before - 1  # a torn last line is the most a kill can cost
    assert counts["llm_pairs_judged"] + counts["llm_pairs_reused"] == total  # one LLM judge: a judgment a pair
    assert (run / "train.jsonl").read_text() == (whole / "train.jsonl").read_text()
    keys = [json.loads(line)["key"] for line in store.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == total  # nothing judged twice


def test_a_second_embedder_is_a_judge(tmp_path, minilm_path, tiny_bert_path):
    run = make_run(tmp_path / "run")
    args = ["relabel", "--run", run, "--embedder", minilm_path, "--second-embedder", tiny_bert_path,
            "--cache-dir", tmp_path / "cache", "--quiet", "--judges", "dense,dense2", "--top-k", "4"]
    assert cli(args) == 0
    section = json.loads((run / "manifest.json").read_text())["relabel"]
    assert section["models"]["second_embedder"].startswith(tiny_bert_path.name)
    assert set(section["counts"]["judge_top1_agrees_with_fused"]) == {"dense", "dense2"}
    assert len(list(read_records(run / "train.jsonl", TrainingExample))) == 12
