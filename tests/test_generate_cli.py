"""`synthgen generate` end to end through the real hf backend: outputs, manifest, resume (kill -9), refusal.

The tiny random model writes noise, so most tests use a template whose prefill is a whole answer built from the
passage: the model still runs on every prompt (real loading, batching, seeds), and the answers are known.
One test runs the real bundled SmolLM2 on a real passage.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthgen.cli import app
from synthgen.corpus import ingest
from synthgen.records import Passage, Query, read_records

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"

# The prefill is a complete answer, so the first JSON object of prefill + completion is known in advance.
KNOWN_ANSWER = """[[system]]
Test prompt.
[[user]]
Passage: {{ passage }}
Query form: {{ form }}
[[assistant]]
{"task": "find {{ form }}", "query": "{{ (title ~ ' ' ~ form) | replace('"', '') }}"}
"""
# Passages about bees get a known answer; the others get text that is never JSON, every attempt.
SOME_MALFORMED = """[[user]]
{{ passage }}
[[assistant]]
{% if 'bee' in passage %}{"task": "t", "query": "{{ title | replace('"', '') }} {{ form }}"}{% else %}no json here{% endif %}
"""


def llm_only(args: tuple[str, ...]) -> list[str]:
    """These tests are about the LLM's queries: no keyphrase queries unless a test asks for them."""
    return [*args] if "--keyphrase-queries" in args else [*args, "--keyphrase-queries", "0"]


def generate(*args: str) -> None:
    """The command in-process (typer's own parsing), raising what it raises."""
    app(["generate", *llm_only(args)], standalone_mode=False)


def generate_subprocess(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from synthgen.cli import main; main()", "generate", *llm_only(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def queries(run: Path) -> list[Query]:
    return list(read_records(run / "queries.jsonl", Query))


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["generate"]


@pytest.fixture
def known_template(tmp_path) -> Path:
    path = tmp_path / "known.j2"
    path.write_text(KNOWN_ANSWER)
    return path


def test_outputs_and_manifest(tmp_path, tiny_llm_path, known_template):
    run = tmp_path / "run"
    generate("--corpus", str(CORPUS), "--out", str(run), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
             "--max-passages", "8", "--queries-per-passage", "2", "--max-tokens", "8", "--batch-size", "5", "--quiet")
    passages = list(read_records(run / "passages.jsonl", Passage))
    assert passages == ingest(CORPUS)[0]
    by_id = {p.id: p for p in passages}
    written = queries(run)
    assert len(written) == 16
    for q in written:
        passage_id, n = q.id.rsplit("@", 1)
        assert q.passage_id == passage_id and n in ("0", "1")
        assert q.query == f"{by_id[passage_id].title} {q.form}" and q.task == f"find {q.form}"
    for passage_id in {q.passage_id for q in written}:
        assert len({q.form for q in written if q.passage_id == passage_id}) == 2
    m = manifest(run)
    assert m["complete"] is True
    assert m["counts"] == {"passages_read": 22, "passages_prompted": 8, "queries_prompted": 16, "answers": 16,
                           "malformed": 0, "parsed": 16, "filtered": {}, "dropped": 0, "written": 16, "keyphrases": 0}
    assert m["template"]["sha256"] == hashlib.sha256(known_template.read_bytes()).hexdigest()
    assert m["model"] == f"hf:{tiny_llm_path}"
    assert m["sampling"] == {"max_tokens": 8, "temperature": 0.7, "top_p": 0.95, "stop": ["}"]}
    assert m["corpus"]["counts"]["files"] == 22
    assert m["throughput"]["tokens_per_s"] > 0 and m["throughput"]["passages_per_s"] > 0
    assert m["throughput"]["prompt_tokens"] > 0 and m["wall_seconds"] > 0


def test_malformed_answers_are_retried_then_dropped(tmp_path, tiny_llm_path):
    template = tmp_path / "some.j2"
    template.write_text(SOME_MALFORMED)
    run = tmp_path / "run"
    generate("--corpus", str(CORPUS), "--out", str(run), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(template),
             "--max-tokens", "8", "--max-attempts", "3", "--quiet")
    bees = {p.id for p in ingest(CORPUS)[0] if "bee" in " ".join(p.text.split()[:150])}
    assert 0 < len(bees) < 22
    assert {q.passage_id for q in queries(run)} == bees
    counts = manifest(run)["counts"]
    assert counts["dropped"] == 22 - len(bees)
    assert counts["malformed"] == 3 * (22 - len(bees))
    assert counts["answers"] == len(bees) + 3 * (22 - len(bees))


def test_near_duplicates_across_batches_are_filtered(tmp_path, tiny_llm_path):
    corpus = tmp_path / "corpus.jsonl"
    texts = ["Bees dance to show the way to flowers.", "Honey is made from nectar by bees.",
             "Bees dance to show the way to flowers!", "Wax comes from glands on the worker bee."]
    corpus.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n" for i, t in enumerate(texts)))
    template = tmp_path / "echo.j2"
    template.write_text('[[user]]\n{{ passage }}\n[[assistant]]\n{"task": "t", "query": "{{ passage }}"}\n')
    run = tmp_path / "run"
    generate("--corpus", str(corpus), "--out", str(run), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(template),
             "--max-tokens", "8", "--batch-size", "1", "--max-copied-words", "50", "--quiet")
    kept = [q.query for q in queries(run)]
    assert len(kept) == 3 and sum("dance" in q for q in kept) == 1
    # a repeat of an earlier batch's query is dropped, not asked again: batches are settled on their own
    assert manifest(run)["counts"]["filtered"] == {"duplicate": 1} and manifest(run)["counts"]["dropped"] == 1


def test_rerun_resumes_and_a_larger_sample_extends_the_same_run(tmp_path, tiny_llm_path, known_template):
    common = ["--corpus", str(CORPUS), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
              "--max-tokens", "8", "--quiet"]
    run = tmp_path / "run"
    generate(*common, "--out", str(run), "--max-passages", "5")
    first = (run / "queries.jsonl").read_text()
    generate(*common, "--out", str(run), "--max-passages", "5", "--batch-size", "2")  # nothing left to do
    assert (run / "queries.jsonl").read_text() == first
    generate(*common, "--out", str(run), "--max-passages", "12")
    extended = (run / "queries.jsonl").read_text()
    assert extended.startswith(first) and len(extended.splitlines()) == 12
    fresh = tmp_path / "fresh"
    generate(*common, "--out", str(fresh), "--max-passages", "12")
    assert (fresh / "queries.jsonl").read_text() == extended
    assert manifest(run)["counts"] == manifest(fresh)["counts"]


def test_changed_settings_are_refused_unless_overwrite(tmp_path, tiny_llm_path, known_template):
    common = ["--corpus", str(CORPUS), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
              "--max-tokens", "8", "--max-passages", "3", "--quiet"]
    generate(*common, "--out", str(tmp_path / "run"))
    before = (tmp_path / "run" / "queries.jsonl").read_text()
    process = generate_subprocess(*common, "--out", "run", "--seed", "7", "--temperature", "0.3", cwd=tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: run holds queries made with") and "seed" in line and "temperature" in line
    assert "--overwrite" in line
    assert (tmp_path / "run" / "queries.jsonl").read_text() == before
    generate(*common, "--out", str(tmp_path / "run"), "--seed", "7", "--overwrite")
    assert manifest(tmp_path / "run")["identity"]["options"]["seed"] == 7
    assert len(queries(tmp_path / "run")) == 3


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_llm_path, known_template):
    common = ["--corpus", str(CORPUS), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
              "--queries-per-passage", "4", "--batch-size", "1", "--max-tokens", "24", "--near-duplicate", "0.95",
              "--keyphrase-queries", "1", "--quiet"]
    total = 22 * 4 + 22  # and a keyphrase query for every passage, written last
    whole = tmp_path / "whole"
    generate(*common, "--out", str(whole))
    run = tmp_path / "run"
    process = generate_subprocess(*common, "--out", str(run))
    progress = run / "generate.progress.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and progress.read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = progress.read_text().count("\n")
    assert 3 <= finished < total
    with open(run / "queries.jsonl", "a") as handle:  # what a kill in the middle of a write leaves behind
        handle.write('{"id": "torn')
    generate(*common, "--out", str(run))
    assert (run / "queries.jsonl").read_text() == (whole / "queries.jsonl").read_text()
    ids = [q.id for q in queries(run)]
    assert len(ids) == len(set(ids)) == total
    assert manifest(run)["counts"] == manifest(whole)["counts"]


@pytest.mark.slow
def test_bundled_smollm2_writes_parseable_queries_for_a_real_passage(tmp_path):
    pytest.importorskip("gguf", reason="the bundled model's GGUF reader (pip install gguf accelerate)")
    run = tmp_path / "run"
    generate("--corpus", str(CORPUS / "beekeeping" / "colony.md"), "--out", str(run), "--queries-per-passage", "4",
             "--quiet")
    counts = manifest(run)["counts"]
    assert counts["answers"] - counts["malformed"] >= 1
    written = queries(run)
    assert written, counts
    for q in written:
        assert q.passage_id == "colony.md#0" and q.query and q.task
    assert manifest(run)["model"].startswith("hf:")


def test_the_bundled_template_gets_only_well_formed_answers_even_from_a_random_model(tmp_path, tiny_llm_path):
    """The bundled prefill opens the query's string, so whatever a model samples parses; asked for the whole
    object instead (the former shape), the same random model breaks most answers."""
    run = tmp_path / "run"
    generate("--corpus", str(CORPUS), "--out", str(run), "--llm", f"hf:{tiny_llm_path}", "--max-passages", "10",
             "--max-tokens", "12", "--min-overlap", "0", "--max-copied-words", "50", "--quiet")
    counts = manifest(run)["counts"]
    assert counts["answers"] >= 10 and counts["malformed"] == 0
    assert manifest(run)["sampling"]["stop"] == ['"', "\n"]
    whole_object = tmp_path / "whole.j2"
    bundled = (REPO / "prompts" / "generate.j2").read_text()
    whole_object.write_text(bundled[: bundled.rindex("[[assistant]]")] + '[[assistant]]\n{"task": "\n')
    generate("--corpus", str(CORPUS), "--out", str(tmp_path / "whole"), "--llm", f"hf:{tiny_llm_path}",
             "--prompt", str(whole_object), "--max-passages", "10", "--max-tokens", "12", "--quiet")
    assert manifest(tmp_path / "whole")["counts"]["malformed"] > 0


def test_a_base_model_without_chat_template_generates_from_the_plain_template(tmp_path, tiny_llm_path):
    """A base model (Gemma-3-270M is one) has no chat template: the chat template is refused with a clear
    error, and generate_base.j2 (plain few-shot text) gets only well-formed answers, even from a random model."""
    import shutil

    from synthgen.errors import UserError

    base = tmp_path / "base-model"
    shutil.copytree(tiny_llm_path, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="no chat template"):
        generate("--corpus", str(CORPUS), "--out", str(tmp_path / "chat"), "--llm", f"hf:{base}", "--max-passages", "2",
                 "--quiet")
    run = tmp_path / "run"
    generate("--corpus", str(CORPUS), "--out", str(run), "--llm", f"hf:{base}", "--prompt", "generate_base.j2",
             "--max-passages", "6", "--max-tokens", "12", "--min-overlap", "0", "--max-copied-words", "50", "--quiet")
    counts = manifest(run)["counts"]
    assert counts["answers"] >= 6 and counts["malformed"] == 0
    assert {q.task for q in queries(run)} <= {"Given a question, retrieve a passage that answers it",
                                              "Given a claim, retrieve passages that support or refute it",
                                              "Given search keywords, retrieve relevant passages",
                                              "Given a topic title, retrieve passages about it"}


def test_cluster_sample_takes_passages_across_clusters_and_extends(tmp_path, tiny_llm_path, known_template):
    from synthgen.generate import GenerateConfig, plan
    from synthgen.sampling import passage_clusters

    run, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--corpus", str(CORPUS), "--out", str(run), "--llm", f"hf:{tiny_llm_path}", "--prompt",
              str(known_template), "--sample", "cluster", "--cache-dir", str(cache), "--max-tokens", "8", "--quiet"]
    generate(*common, "--max-passages", "6")
    passages = ingest(CORPUS)[0]
    clusters = passage_clusters(passages, 0, cache)
    expected = [item.passage.id for item in plan(passages, GenerateConfig(sample="cluster", max_passages=6), clusters)]
    assert sorted(q.passage_id for q in queries(run)) == sorted(expected)
    assert manifest(run)["config"]["sample"] == "cluster"
    assert len(set(clusters)) > 1
    generate(*common, "--max-passages", "9")  # the same clusters, a longer prefix of the same order
    assert {q.passage_id for q in queries(run)} >= set(expected) and len(queries(run)) == 9


def test_a_resumed_run_goes_on_in_the_dtype_it_started_in(tmp_path, tiny_llm_path, known_template):
    """"auto" is decided per machine: batches made in bf16 elsewhere make the rest of the run bf16 here too."""
    import torch

    from synthgen.llm.hf import resolve_dtype

    common = ["--corpus", str(CORPUS), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
              "--max-tokens", "8", "--quiet", "--out", str(tmp_path / "run")]
    generate(*common, "--max-passages", "3")
    progress = tmp_path / "run" / "generate.progress.jsonl"
    here = str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    logs = [json.loads(line) for line in progress.read_text().splitlines()]
    assert {log["dtype"] for log in logs} == {here} and manifest(tmp_path / "run")["dtype"] == here
    other = "bfloat16" if here == "float32" else "float32"
    progress.write_text("".join(json.dumps({**log, "dtype": other}) + "\n" for log in logs))
    generate(*common, "--max-passages", "6")
    logs = [json.loads(line) for line in progress.read_text().splitlines()]
    assert len(logs) > 1 and {log["dtype"] for log in logs} == {other}
    assert manifest(tmp_path / "run")["dtype"] == other


def test_a_corpus_smaller_than_the_sample_gets_several_queries_per_passage_unless_it_gets_keyphrase_queries(
        tmp_path, tiny_llm_path, known_template):
    common = ("--corpus", str(CORPUS), "--llm", f"hf:{tiny_llm_path}", "--prompt", str(known_template),
              "--max-tokens", "8", "--batch-size", "22", "--max-passages", "50", "--quiet")
    passages = len(ingest(CORPUS)[0])
    assert 50 // passages == 2  # the example corpus's 22 passages: a sample of 50 is two queries each
    cases = ((("--keyphrase-queries", "0"), 2),
             (("--keyphrase-queries", "0", "--queries-per-passage", "1"), 1),
             (("--keyphrase-queries", "1"), 1),  # a corpus that gets keyphrase queries keeps one LLM query each
             (("--keyphrase-queries", "1", "--queries-per-passage", "3"), 3))  # a named number wins either way
    for n, (named, expected) in enumerate(cases):
        run = tmp_path / f"run{n}"
        generate(*common, "--out", str(run), *named)
        assert manifest(run)["config"]["queries_per_passage"] == expected
        assert manifest(run)["counts"]["queries_prompted"] == expected * passages
    # no number named: its passages are long, so the corpus decides keyphrase queries, and so one LLM query each
    app(["generate", *common, "--out", str(tmp_path / "decided")], standalone_mode=False)
    assert manifest(tmp_path / "decided")["config"]["keyphrase_queries"] > 0
    assert manifest(tmp_path / "decided")["config"]["queries_per_passage"] == 1
