#!/usr/bin/env bash
# `npm run demo`: from a fresh clone to a real VS Code in the browser, with the packaged
# extension installed and a sample workspace open. Prints the URL; Ctrl-C stops it.
#   PORT=8080    where code-server listens (127.0.0.1 only)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PORT="${PORT:-8080}"
DEMO="$ROOT/.cache/demo"
say() { echo "[demo] $*"; }

node -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' || {
  say "Node 22 or newer is required (found $(node -v)); see the README's Prerequisites"; exit 1
}

# code-server compiles native modules on install: it needs a C++ toolchain, python3 and the Kerberos headers.
bash scripts/prereqs.sh "npm run demo" build-essential python3 libkrb5-dev curl ca-certificates

# npm ci only when node_modules is missing or older than the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi

bash scripts/codeserver.sh install

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) TARGET=linux-x64 ;;
  Linux-aarch64) TARGET=linux-arm64 ;;
  Darwin-arm64) TARGET=darwin-arm64 ;;
  Darwin-x86_64) TARGET=darwin-x64 ;;
  *) TARGET=universal ;;
esac
say "building and packing the $TARGET extension"
node esbuild.mjs
VSIX="$(node scripts/package.mjs --target "$TARGET" | tail -1)"

WS="$DEMO/workspace"
say "generating the sample workspace in $WS"
rm -rf "$WS"
node dist/sample.js "$WS"

RUN="$DEMO/run"
stop() {
  trap - INT TERM EXIT
  say "stopping code-server"
  bash scripts/codeserver.sh stop "$RUN"
}
trap stop INT TERM EXIT
# TW_CS_PARENT: a demo killed outright (SIGKILL, a closed terminal) still stops its server.
LINE="$(TW_CS_RUN="$RUN" TW_CS_VSIX="$VSIX" TW_CS_PORT="$PORT" TW_CS_PARENT=$$ bash scripts/codeserver.sh start | tail -1)"
read -r PID URL <<<"$LINE"
[ -n "${URL:-}" ] || { say "code-server did not start"; exit 1; }
echo
say "VS Code with Tensor Workbench: ${URL}?folder=$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$WS")"
say "open it in a browser; Ctrl-C stops the server (log: $RUN/code-server.log)"
while kill -0 "$PID" 2>/dev/null; do sleep 1; done
say "code-server exited; see $RUN/code-server.log"
