"""A full disk (here: a file-size limit, RLIMIT_FSIZE, on the process): one line naming the file, exit 2, no temporary
files left behind, and the same command run again with room finishes with nothing lost."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from test_generate_cli import KNOWN_ANSWER
from test_relabel_cli import cli


def limited(limit: int, *args) -> subprocess.CompletedProcess:
    """The command in a process whose files cannot grow past `limit` bytes (writes then fail with EFBIG;
    Python ignores SIGXFSZ)."""
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-c", "from synthgen.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=300, preexec_fn=set_limit)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llm_path):
    folder = tmp_path_factory.mktemp("disk-full")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": f"Note {i}", "text": f"Bees store honey {i}."}) + "\n"
                              for i in range(10)))
    template = folder / "known.j2"
    template.write_text(KNOWN_ANSWER)
    args = ["generate", "--corpus", corpus, "--llm", f"hf:{tiny_llm_path}", "--prompt", template, "--batch-size", "1",
            "--queries-per-passage", "4", "--max-tokens", "8", "--quiet"]
    whole = folder / "whole"
    assert cli([*args, "--out", whole]) == 0
    return folder, args, whole


TEMPORARY = (".queries.jsonl.", ".manifest.json.", ".generate.progress.jsonl.", ".passages.jsonl.")


# The limits fall in the first manifest write (atomic: a temporary file renamed) and in the appended progress file
# (sizes of a whole run: passages about 900 bytes, manifest 2,500, queries 4,100, progress 6,600).
@pytest.mark.parametrize("limit, fails", [(1000, "manifest.json"), (3000, "generate.progress.jsonl")])
def test_a_full_disk_is_one_line_and_the_run_resumes_after(setup, limit, fails):
    folder, args, whole = setup
    run = folder / f"run-{limit}"
    result = limited(limit, *args, "--out", run)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: cannot write {run / fails}: File too large"
    assert not [p.name for p in run.iterdir() if p.name.startswith(TEMPORARY)]
    assert cli([*args, "--out", run]) == 0  # room again: the same command finishes
    for name in ("queries.jsonl", "passages.jsonl"):
        assert (run / name).read_text() == (whole / name).read_text()
    counts = lambda r: json.loads((r / "manifest.json").read_text())["generate"]["counts"]  # noqa: E731
    assert counts(run) == counts(whole)
