#!/usr/bin/env bash
# Installs the Python packages that the tests use as independent oracles (never at run time):
# torch (CPU) writes real PyTorch checkpoints and reads them back with torch.load; gguf-py
# (GGUFWriter/GGUFReader) and numpy write and read GGUF files. Idempotent: a package that
# imports already is left alone. The package index here is a local mirror; naming it avoids
# minutes of retries against an unreachable default index.
set -euo pipefail
PY=${PYTHON:-python3}
pipi() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }
if ! "$PY" -c 'import gguf, numpy' 2>/dev/null; then
  echo "[oracles] installing gguf-py and numpy"
  pipi --index-url file:///opt/pypi/simple gguf numpy 2>/dev/null || pipi gguf numpy
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "[oracles] installing torch (CPU)"
  pipi --index-url file:///opt/pypi/simple --find-links /opt/wheels 'torch==2.13.0+cpu' 2>/dev/null \
    || pipi --find-links /opt/wheels 'torch' \
    || { echo "[oracles] could not install torch: the pickle tests will fail in CI" >&2; exit 1; }
fi
# Transformers: its FP8 and MXFP4 code is the reference for the quantized-safetensors schemes
# (quantizer, dequantizers, from_pretrained); accelerate is what its FP8 from_pretrained needs.
if ! "$PY" -c 'import transformers' 2>/dev/null; then
  echo "[oracles] installing transformers"
  pipi --index-url file:///opt/pypi/simple transformers 2>/dev/null || pipi transformers \
    || { echo "[oracles] could not install transformers: the quantized-safetensors oracle tests will fail in CI" >&2; exit 1; }
fi
# sentencepiece trains the SentencePiece vocabularies of the GGUF converter's tokenizer tests.
if ! "$PY" -c 'import sentencepiece' 2>/dev/null; then
  echo "[oracles] installing sentencepiece"
  pipi --index-url file:///opt/pypi/simple sentencepiece 2>/dev/null || pipi sentencepiece \
    || echo "[oracles] could not install sentencepiece: the SentencePiece tokenizer tests fall back" >&2
fi
# PEFT is the reference for LoRA merges, extract-lora, lora-resize and lora-combine.
if ! "$PY" -c 'import peft' 2>/dev/null; then
  echo "[oracles] installing peft"
  pipi --index-url file:///opt/pypi/simple peft 2>/dev/null || pipi peft \
    || echo "[oracles] could not install peft: the PEFT comparisons skip" >&2
fi
if ! "$PY" -c 'import accelerate' 2>/dev/null; then
  echo "[oracles] installing accelerate"
  pipi --index-url file:///opt/pypi/simple accelerate 2>/dev/null \
    || pipi --index-url file:///opt/pypi/simple --no-deps accelerate 2>/dev/null || pipi --no-deps accelerate
fi
"$PY" -c 'import gguf, numpy, torch, transformers, accelerate; print("[oracles] gguf-py, numpy, torch, transformers and accelerate present")'
