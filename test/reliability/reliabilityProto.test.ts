// Keys that are also Object.prototype's names survive parsing, every output and matching.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';

const dir = mkdtempSync(join(tmpdir(), 'tw-rel-proto-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TW_CPU_WORKERS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const NAMES = ['__proto__', 'constructor', 'hasOwnProperty', 'toString.weight', 'model.__proto__.weight'];
// The header text is written by hand: a JS object literal would itself drop `__proto__`.
const META = '{"__proto__":"p","constructor":"c","valueOf":"v","format":"pt"}';
const META_KEYS = ['__proto__', 'constructor', 'valueOf', 'format'];

/** 64 × 32 F32 per name; values depend on `seed` for the last name only (one tensor differs). */
function write(path: string, seed: number): void {
  const n = 64 * 32;
  const entries = NAMES.map((name, i) => `${JSON.stringify(name)}:{"dtype":"F32","shape":[64,32],"data_offsets":[${i * n * 4},${(i + 1) * n * 4}]}`);
  let json = `{"__metadata__":${META},${entries.join(',')}}`;
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const data = new Float32Array(n * NAMES.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.cos(i * 0.11) * 0.05 + (i >= n * (NAMES.length - 1) ? seed * 0.01 : 0);
  const h = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + h.length + data.byteLength);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  Buffer.from(data.buffer).copy(out, 8 + h.length);
  writeFileSync(path, out);
}

/** The `__metadata__` keys and the tensor names of a file, read by hand from its header text. */
function headerKeys(path: string): { meta: string[]; tensors: string[] } {
  const b = readFileSync(path);
  const text = b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString('utf8');
  // JSON.parse keeps `__proto__` as an own key; Object.keys lists it.
  const obj = JSON.parse(text);
  return { meta: Object.keys(obj.__metadata__ ?? {}), tensors: Object.keys(obj).filter((k) => k !== '__metadata__') };
}

const A = join(dir, 'a.safetensors');
const B = join(dir, 'b.safetensors');
write(A, 0);
write(B, 1);

it('inspect --json writes every metadata key and tensor name; the text tree shows each tensor', () => {
  const r = cli('inspect', A, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes('"metadata":{"__proto__":"p","constructor":"c","valueOf":"v","format":"pt"}'), r.stdout.slice(0, 400));
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j.metadata), META_KEYS);
  assert.deepEqual(j.tensors.map((t: { name: string }) => t.name).sort(), [...NAMES].sort());
  const text = cli('inspect', A).stdout;
  for (const k of META_KEYS) assert.match(text, new RegExp(`^  ${k}: `, 'm'));
  for (const n of ['__proto__', 'constructor', 'hasOwnProperty']) assert.match(text, new RegExp(`[─ ]${n}  F32 \\[64, 32\\]`));
});

it('convert and quantize carry every metadata key into their outputs', () => {
  const conv = join(dir, 'conv.safetensors');
  assert.equal(cli('convert', A, conv, '--dtype', 'BF16').code, 0);
  const c = headerKeys(conv);
  assert.deepEqual(c.meta.filter((k) => META_KEYS.includes(k)).sort(), [...META_KEYS].sort());
  assert.deepEqual(c.tensors.sort(), [...NAMES].sort());
  const q = join(dir, 'q.safetensors');
  const r = cli('quantize', A, q, '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu');
  assert.equal(r.code, 0, r.stderr);
  const k = headerKeys(q);
  for (const m of META_KEYS) assert.ok(k.meta.includes(m), `quantize lost metadata key ${m}: ${k.meta.join(', ')}`);
  for (const n of NAMES) assert.ok(k.tensors.includes(n), `quantize lost tensor ${n}`);
});

it('diff pairs tensors named like Object.prototype members by name', () => {
  const r = cli('diff', A, B, '--backend', 'cpu', '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(j.added, []);
  assert.deepEqual(j.removed, []);
  const byName = new Map<string, { identical: boolean }>(j.tensors.map((t: { name: string; identical: boolean }) => [t.name, t]));
  assert.deepEqual([...byName.keys()].sort(), [...NAMES].sort());
  // Only the last tensor's values differ between the two files.
  for (const n of NAMES) assert.equal(byName.get(n)!.identical, n !== NAMES[NAMES.length - 1], n);
});

it('stats reports each of them', () => {
  const j = JSON.parse(cli('stats', A, '--backend', 'cpu', '--json').stdout);
  assert.deepEqual(j.tensors.map((t: { name: string }) => t.name).sort(), [...NAMES].sort());
  for (const t of j.tensors) assert.equal(t.count, 64 * 32);
});
