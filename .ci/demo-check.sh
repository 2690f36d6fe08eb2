#!/usr/bin/env bash
# Runs `npm run demo` as the README says, in its own process group, and waits until code-server
# answers /healthz with the extension installed and the sample workspace generated; then stops the
# whole group and checks that the server is gone. The demo's output is in .artifacts/ci-demo.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .artifacts
LOG=.artifacts/ci-demo.log
# A free port rather than the demo's default 8080, which something else on the machine may hold.
PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
# 20 min: a first run builds code-server's native modules (~2.5 min on 2 cores); far longer is a hang.
LIMIT=1200
WS=.cache/demo/workspace
EXT=.cache/demo/run/extensions

# Not a child of a job-control shell, so setsid does not fork: $! is the group's leader.
PORT=$PORT setsid npm run demo >"$LOG" 2>&1 </dev/null &
pid=$!
stop_demo() { kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop_demo EXIT
t0=$SECONDS
ready() {
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 &&
    grep -q 'VS Code with Tensor Workbench: http' "$LOG" &&
    compgen -G "$WS/*/*.safetensors" >/dev/null &&
    compgen -G "$EXT/tensor-workbench.tensor-workbench-*" >/dev/null
}
until ready; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -60 "$LOG"; echo "[ci] npm run demo exited before code-server was ready" >&2; exit 1
  fi
  if [ $((SECONDS - t0)) -gt $LIMIT ]; then
    tail -60 "$LOG"; echo "[ci] npm run demo not ready after $LIMIT s" >&2; exit 1
  fi
  sleep 2
done
echo "[ci] npm run demo ready after $((SECONDS - t0)) s: $(grep -o 'http://127.0.0.1:[0-9]*/?folder=[^ ]*' "$LOG")"
echo "[ci] sample workspace: $(find "$WS" -name '*.safetensors' | wc -l) .safetensors files; extension: $(ls "$EXT" | grep tensor-workbench)"
trap - EXIT
stop_demo
# The demo's trap stops code-server (its own process group); 10 s for it to close.
for _ in $(seq 1 20); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 || break; sleep 0.5; done
if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
  echo "[ci] code-server still answers on $PORT after the demo was stopped" >&2; exit 1
fi
echo "[ci] npm run demo stopped; code-server is gone"
