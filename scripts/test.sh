#!/usr/bin/env bash
# The README's test command (`npm test`): type-check, build, then one node:test run
# over every suite (unit, GPU twins on SwiftShader, webview in Chromium, VS Code e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
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
# The VS Code suites need chromium (the browser that drives the workbench, and SwiftShader for
# Dawn) and code-server, which is installed here, before the run, so that its minutes show as their
# own step. A missing package that cannot be installed is named with the command that installs it,
# and the e2e suites then fail rather than skip: a green run must mean they ran.
for f in "${files[@]}"; do
  if [[ "$f" == *e2e* ]] && [ "$(uname -s)" = Linux ]; then
    bash scripts/prereqs.sh "npm test" chromium libvulkan1 build-essential python3 libkrb5-dev curl ca-certificates || true
    bash scripts/codeserver.sh install
    break
  fi
done
# Dawn finds SwiftShader (shipped in Debian's chromium package) through this ICD file (after the
# preflight above, which may have just installed chromium).
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; then
  export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
exec node --test --test-reporter=spec "${files[@]}"
