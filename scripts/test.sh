#!/usr/bin/env bash
# The README's test command (`npm test`): type-check, build, then one node:test run
# over every suite (unit, GPU twins on SwiftShader, webview in Chromium, VS Code e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
# Dawn finds SwiftShader (shipped in Debian's chromium package) through this ICD file.
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; then
  export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
npx tsc --noEmit -p .
npx tsc --noEmit -p webview
node esbuild.mjs --tests
mkdir -p .artifacts
# TW_TEST_FILTER narrows the run to files whose name contains it (for local work).
shopt -s nullglob
files=(dist/*.test.js)
if [ -n "${TW_TEST_FILTER:-}" ]; then
  sel=(); for f in "${files[@]}"; do [[ "$f" == *"$TW_TEST_FILTER"* ]] && sel+=("$f"); done; files=("${sel[@]}")
fi
# TW_TEST_EXCLUDE drops files whose name contains it (`npm run test:unit` drops the e2e suites).
if [ -n "${TW_TEST_EXCLUDE:-}" ]; then
  sel=(); for f in "${files[@]}"; do [[ "$f" == *"$TW_TEST_EXCLUDE"* ]] || sel+=("$f"); done; files=("${sel[@]}")
fi
exec node --test --test-reporter=spec "${files[@]}"
