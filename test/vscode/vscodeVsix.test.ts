/**
 * `npm run package` output, read back with a ZIP reader written here (not vsce's):
 * each platform VSIX carries exactly its own Dawn binary, the universal one none,
 * no sources or tests, and each stays within 15 MB.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inflateRawSync } from 'node:zlib';

const ROOT = resolve(__dirname, '..');
const WORK = join(ROOT, '.cache', 'vsix-test');
// The promise in the README: every package downloads quickly.
const MAX_BYTES = 15 * 1024 * 1024;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

/** Files each target must carry under extension/dist/dawn/, and where they come from in the webgpu package. */
const NATIVE: Record<string, Record<string, string>> = {
  'linux-x64': { 'linux-x64/dawn.node': 'linux-x64/dawn.node' },
  'linux-arm64': { 'linux-arm64/dawn.node': 'linux-arm64/dawn.node' },
  'darwin-arm64': { 'darwin-arm64/dawn.node': 'darwin-universal/dawn.node' },
  'darwin-x64': { 'darwin-x64/dawn.node': 'darwin-universal/dawn.node' },
  'win32-x64': { 'win32-x64/dawn.node': 'win32-x64/dawn.node', 'win32-x64/d3dcompiler_47.dll': 'win32-x64/d3dcompiler_47.dll' },
  universal: {},
};

interface Entry {
  readonly name: string;
  readonly method: number;
  readonly compressed: number;
  readonly size: number;
  readonly localOffset: number;
}

/** The central directory of a ZIP file (no ZIP64: a VSIX within 15 MB never needs it). */
function zipEntries(zip: Buffer): Entry[] {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  assert.ok(eocd >= 0, 'no end-of-central-directory record');
  const count = zip.readUInt16LE(eocd + 10);
  let off = zip.readUInt32LE(eocd + 16);
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(off), 0x02014b50, 'bad central directory header');
    const n = zip.readUInt16LE(off + 28);
    const e = zip.readUInt16LE(off + 30);
    const c = zip.readUInt16LE(off + 32);
    out.push({
      method: zip.readUInt16LE(off + 10),
      compressed: zip.readUInt32LE(off + 20),
      size: zip.readUInt32LE(off + 24),
      localOffset: zip.readUInt32LE(off + 42),
      name: zip.toString('utf8', off + 46, off + 46 + n),
    });
    off += 46 + n + e + c;
  }
  return out;
}

function zipRead(zip: Buffer, e: Entry): Buffer {
  const o = e.localOffset;
  assert.equal(zip.readUInt32LE(o), 0x04034b50);
  const start = o + 30 + zip.readUInt16LE(o + 26) + zip.readUInt16LE(o + 28);
  const raw = zip.subarray(start, start + e.compressed);
  return e.method === 0 ? raw : inflateRawSync(raw);
}

const files = new Map<string, string>();

before(
  () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), '--work', WORK], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const line of r.stdout.trim().split('\n')) {
      const target = Object.keys(NATIVE).find((t) => line.endsWith(`-${t}-${pkg.version}.vsix`));
      if (target) files.set(target, line);
    }
  },
  // Six packages, each a production build copy and a ZIP of up to ~25 MB: well under a minute.
  { timeout: 5 * 60_000 },
);

for (const target of Object.keys(NATIVE)) {
  test(`${target} VSIX: its own native files only, no sources, within 15 MB`, () => {
    const file = files.get(target);
    assert.ok(file, `no ${target} VSIX was made`);
    assert.ok(statSync(file).size <= MAX_BYTES, `${file} is ${statSync(file).size} bytes`);
    const zip = readFileSync(file);
    const entries = zipEntries(zip);
    const names = entries.map((e) => e.name);

    const natives = entries.filter((e) => /\.(node|dll|so|dylib)$/.test(e.name));
    const want = NATIVE[target];
    assert.deepEqual(natives.map((e) => e.name).sort(), Object.keys(want).map((p) => `extension/dist/dawn/${p}`).sort());
    for (const e of natives) {
      const src = join(ROOT, 'node_modules', 'webgpu', 'dist', want[e.name.slice('extension/dist/dawn/'.length)]);
      assert.equal(e.size, statSync(src).size, `${e.name} is not the webgpu package's file`);
    }

    for (const n of names) {
      assert.doesNotMatch(n, /^extension\/(src|test|webview|scripts|node_modules|bench|\.cache|\.artifacts)\//, n);
      assert.doesNotMatch(n, /\.(ts|map)$|\.test\.js$|vscode-suite\.js$/, n);
    }
    const manifest = JSON.parse(zipRead(zip, entries.find((e) => e.name === 'extension/package.json')!).toString('utf8'));
    assert.ok(names.includes(`extension/${manifest.main.replace(/^\.\//, '')}`), 'the main bundle is missing');
    assert.ok(names.includes(`extension/${manifest.icon}`), 'the icon is missing');
    assert.equal(manifest.devDependencies, undefined);
    const vsixManifest = zipRead(zip, entries.find((e) => e.name === 'extension.vsixmanifest')!).toString('utf8');
    if (target === 'universal') {
      assert.doesNotMatch(vsixManifest, /TargetPlatform=/);
      assert.match(manifest.description, /CPU/);
    } else {
      assert.match(vsixManifest, new RegExp(`TargetPlatform="${target}"`));
    }
  });
}
