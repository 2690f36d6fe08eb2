#!/usr/bin/env bash
# Python oracles for the tests: gguf-py (GGUFWriter/GGUFReader) and numpy, for test/gguf.
# Idempotent: installs only what is missing. CI runs it before the tests.
set -euo pipefail
if ! python3 -c 'import gguf, numpy' 2>/dev/null; then
  python3 -m pip install --quiet gguf numpy
fi
python3 -c 'import gguf, numpy; print("oracles: gguf-py and numpy present")'
