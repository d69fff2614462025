"""The Ray executor against the local one, on a local Ray instance (`ray.init(num_cpus=2)`) and the tiny LLM.

The tiny model writes noise, and the filters are opened (`--min-overlap 0`) so that noise is kept: every query
is then the model's own sampled text, and two runs agree only if every prompt saw the same model, seed and batch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from synthgen.cli import app
from synthgen.errors import UserError

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'synthgen[ray]')")
pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"
UNITS = 11  # 22 passages, batches of 2


def generate_args(tiny_llm_path: Path, out: Path, executor: str) -> list[str]:
    return ["generate", "--corpus", str(CORPUS), "--out", str(out), "--llm", f"hf:{tiny_llm_path}",
            "--max-tokens", "8", "--min-overlap", "0", "--batch-size", "2", "--keyphrase-queries", "0", "--quiet",
            "--executor", executor,
            *(["--replicas", "2"] if executor == "ray" else [])]


def relabel_args(tiny_llm_path: Path, run: Path, executor: str) -> list[str]:
    return ["relabel", "--run", str(run), "--llm", f"hf:{tiny_llm_path}", "--judges", "ql,bm25",
            "--retrieval", "bm25", "--batch-pairs", "8", "--quiet", "--executor", executor,
            *(["--replicas", "2"] if executor == "ray" else [])]


def run_cli(args: list[str]) -> None:
    app(args, standalone_mode=False)


@pytest.fixture(scope="module")
def ray_instance():
    # workers import this checkout (not another install of synthgen) and stay on one thread each
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tiny_llm_path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    run_cli(generate_args(tiny_llm_path, run, "local"))
    run_cli(relabel_args(tiny_llm_path, run, "local"))
    return run


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_seconds(logs: list[dict]) -> list[dict]:
    return [{k: v for k, v in log.items() if k != "seconds"} for log in logs]


def test_ray_records_equal_local_records(ray_instance, local_run, tiny_llm_path, tmp_path):
    run = tmp_path / "run"
    run_cli(generate_args(tiny_llm_path, run, "ray"))
    written = (local_run / "queries.jsonl").read_text()
    assert len(written.splitlines()) >= 20  # the model's noise is kept, so the comparison is of sampled text
    assert (run / "queries.jsonl").read_text() == written
    assert (without_seconds(lines(run / "generate.progress.jsonl"))
            == without_seconds(lines(local_run / "generate.progress.jsonl")))
    run_cli(relabel_args(tiny_llm_path, run, "ray"))
    assert (run / "judgments.jsonl").read_text() == (local_run / "judgments.jsonl").read_text()
    assert (run / "train.jsonl").read_text() == (local_run / "train.jsonl").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["relabel"]["counts"]["llm_pairs_judged"] > 0
    assert manifest["relabel"]["models"]["llm"] == f"hf:{tiny_llm_path}"


def test_a_run_cut_short_resumes_on_ray_with_only_what_is_missing(ray_instance, local_run, tiny_llm_path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(local_run, run)
    logs = lines(run / "generate.progress.jsonl")[:4]  # what a job killed after its 4th batch leaves
    done = {item for log in logs for item in log["items"]}
    (run / "generate.progress.jsonl").write_text("".join(json.dumps(log) + "\n" for log in logs))
    kept = [q for q in lines(run / "queries.jsonl") if q["id"] in done]
    (run / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in kept))
    run_cli(generate_args(tiny_llm_path, run, "ray"))
    assert (run / "queries.jsonl").read_text() == (local_run / "queries.jsonl").read_text()
    resumed = lines(run / "generate.progress.jsonl")
    assert resumed[:4] == logs and len(resumed) == UNITS  # the 7 missing batches, each once
    assert without_seconds(resumed) == without_seconds(lines(local_run / "generate.progress.jsonl"))


def _engine_pids() -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if "MapBatches(_Engine)" in " ".join(process.info["cmdline"] or ()):
            found.append(process.info["pid"])
    return found


def test_a_worker_killed_mid_run_loses_and_repeats_no_record(ray_instance, local_run, tiny_llm_path, tmp_path):
    run = tmp_path / "run"
    progress = run / "generate.progress.jsonl"
    killed: list[tuple[int, int]] = []  # (pid, batches written when it was killed)

    def kill_a_worker() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            done = progress.read_text().count("\n") if progress.exists() else 0
            pids = _engine_pids()
            if done >= 1 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], done))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    run_cli(generate_args(tiny_llm_path, run, "ray"))
    killer.join(timeout=5)
    assert killed and killed[0][1] < UNITS, "no worker was killed while batches were left"
    print(f"killed worker {killed[0][0]} after {killed[0][1]} of {UNITS} batches")
    assert (run / "queries.jsonl").read_text() == (local_run / "queries.jsonl").read_text()
    items = [item for log in lines(progress) for item in log["items"]]
    assert len(items) == len(set(items)) == 22


def test_executor_mistakes_are_one_line_errors(tiny_llm_path, tmp_path):
    common = ["--corpus", str(CORPUS), "--out", str(tmp_path / "run"), "--quiet"]
    with pytest.raises(UserError, match="unknown --executor 'spark'"):
        run_cli(["generate", *common, "--executor", "spark"])
    with pytest.raises(UserError, match="--tensor-parallel needs a vLLM engine"):
        run_cli(["generate", *common, "--llm", f"hf:{tiny_llm_path}", "--executor", "ray", "--tensor-parallel", "2"])
    with pytest.raises(UserError, match="need --executor ray"):
        run_cli(["relabel", "--run", str(tmp_path), "--replicas", "4"])


def test_a_mistake_met_on_a_worker_is_a_one_line_error(ray_instance, tmp_path):
    with pytest.raises(UserError, match="^on a Ray worker: no model folder at"):
        run_cli(["generate", "--corpus", str(CORPUS), "--out", str(tmp_path / "run"), "--llm", f"hf:{tmp_path / 'absent'}",
                 "--executor", "ray", "--max-passages", "2", "--quiet"])
