"""No library deprecation or other Python warning reaches the user's terminal from any stage: each command runs as
a user runs it (its own process, the default warning filters) and its stderr must hold no `...Warning:` line."""

from __future__ import annotations

import re
import subprocess
import sys

from test_generate_cli import CORPUS, KNOWN_ANSWER

WARNING = re.compile(r"^.*\b[A-Z]\w*Warning\b.*$", re.M)


def run(module: str, *args) -> str:
    result = subprocess.run([sys.executable, "-c", f"from {module}.cli import main; main()", *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def test_no_stage_prints_a_python_warning(tmp_path, tiny_llm_path, tiny_bert_path):
    template = tmp_path / "known.j2"  # the tiny model's own words would be filtered out; the code paths are the same
    template.write_text(KNOWN_ANSWER)
    stderr = run("synthgen", "pipeline", "--corpus", CORPUS, "--out", tmp_path / "run", "--llm", f"hf:{tiny_llm_path}",
                 "--prompt", template,
                 "--max-passages", "4", "--max-tokens", "8", "--judges", "ql,yesno,bm25", "--cache-dir",
                 tmp_path / "cache", "--set", f"model.base={tiny_bert_path}", "--set", "train.max_steps=2",
                 "--set", "train.batch_size=2", "--quiet")
    assert WARNING.findall(stderr) == []
    lora = run("distill", "train", tmp_path / "run" / "model" / "recipe.yaml", "--set", f"output={tmp_path / 'lora'}",
               "--set", "lora.enabled=true", "--set", "lora.r=4", "--quiet")
    assert WARNING.findall(lora) == []
