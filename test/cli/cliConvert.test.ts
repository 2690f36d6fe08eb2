// `convert` end to end: the output, read back by the independent `safetensors`
// npm reader, must equal numpy's RNE casts of the input values (computed by
// python3; for BF16, which numpy lacks, the RNE definition evaluated with numpy), and the
// per-tensor overflow/flush counts must match the oracle's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorSource } from '../../src/format/writer';
import { convertModel } from '../../src/pipelines/convert';
import { CancelledError } from '../../src/core/job';
import { writeLlama } from '../fixtures/llama';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SafeTensor } = require('safetensors') as { SafeTensor: new (b: Uint8Array) => { metadata: Map<string, { dtype: string; shape: number[] }>; getTensor(n: string): Uint8Array } };

const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

function fresh(path: string): Uint8Array {
  const b = readFileSync(path);
  const u = new Uint8Array(b.length);
  u.set(b);
  return u;
}

let dir = '';
const N = 4096;
const inputs: Record<string, { dtype: 'F32' | 'F64' | 'BF16' | 'F8_E4M3' | 'I32'; bytes: Uint8Array }> = {};

/** Deterministic values across the ranges that matter for F16: huge (overflow), tiny (underflow), subnormal, ordinary. */
function values(seed: number): Float64Array {
  const v = new Float64Array(N);
  let s = seed;
  const r = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = 0; i < N; i++) {
    const e = Math.floor(r() * 70) - 35; // 2^-35 … 2^34: both sides of F16's range
    v[i] = (r() < 0.5 ? -1 : 1) * (1 + r()) * 2 ** e;
  }
  v[0] = 0;
  v[1] = -0;
  v[2] = Infinity;
  v[3] = NaN;
  v[4] = 65520; // the F16 overflow tie
  v[5] = 2 ** -25; // half the least F16 subnormal: a tie to zero
  return v;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-convert-'));
  const a = Float32Array.from(values(1));
  const b = values(2);
  const bf = new Uint16Array(N).map((_, i) => (i * 2654435761) >>> 16);
  const f8 = new Uint8Array(256).map((_, i) => i);
  const ints = new Int32Array(N).map((_, i) => i * 7919 - 1000000);
  inputs.a = { dtype: 'F32', bytes: new Uint8Array(a.buffer) };
  inputs.b = { dtype: 'F64', bytes: new Uint8Array(b.buffer) };
  inputs.c = { dtype: 'BF16', bytes: new Uint8Array(bf.buffer) };
  inputs.d = { dtype: 'F8_E4M3', bytes: f8 };
  inputs.e = { dtype: 'I32', bytes: new Uint8Array(ints.buffer) };
  const src: TensorSource[] = Object.entries(inputs).map(([name, t]) => ({ name, dtype: t.dtype, shape: [t.bytes.length / (t.dtype === 'F64' ? 8 : t.dtype === 'F8_E4M3' ? 1 : t.dtype === 'BF16' ? 2 : 4)], data: t.bytes }));
  // No __metadata__: the npm reader treats every key as a tensor.
  await writeSafetensors(join(dir, 'in.safetensors'), src);
  for (const [k, t] of Object.entries(inputs)) writeFileSync(join(dir, `${k}.raw`), t.bytes);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ORACLE = String.raw`
import sys, json, numpy as np
d, target = sys.argv[1], sys.argv[2]
np.seterr(all='ignore')
def e4m3(b):
    # OCP FP8 E4M3: bias 7, no infinities, S.1111.111 is NaN.
    s = np.where(b >> 7, -1.0, 1.0); e = (b >> 3) & 15; m = b & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e.astype(np.float64) - 7))
    return np.where((e == 15) & (m == 7), np.nan, s * v)
vals = {
  'a': np.fromfile(d + '/a.raw', dtype='<f4'),
  'b': np.fromfile(d + '/b.raw', dtype='<f8'),
  'c': (np.fromfile(d + '/c.raw', dtype='<u2').astype(np.uint32) << 16).view(np.float32),
  'd': e4m3(np.fromfile(d + '/d.raw', dtype=np.uint8).astype(np.int64)),
}
def bf16(v):
    # Round to nearest, ties to even, by definition: the nearer of the two neighbouring BF16 values
    # (exact in float64 for these inputs). NaN becomes a quiet NaN; the comparison accepts any NaN for NaN.
    v = np.asarray(v, dtype=np.float64)
    a = np.abs(v)
    fin = np.isfinite(a) & (a > 0)
    m, ex = np.frexp(np.where(fin, a, 1.0))
    q = np.ldexp(1.0, np.maximum(ex - 1, -126) - 7)
    k = np.floor(np.where(fin, a, 0) / q)
    up = ((k + 1) * q - a < a - k * q) | (((k + 1) * q - a == a - k * q) & (np.mod(k, 2) == 1))
    r = np.where(up, (k + 1) * q, k * q)
    bits = (r.astype(np.float32).view(np.uint32) >> 16).astype(np.uint32)
    bits = np.where(np.isnan(a), 0x7fc0, np.where(np.isinf(a), 0x7f80, np.where(a == 0, 0, bits))) | np.where(np.signbit(v), 0x8000, 0)
    return bits.astype('<u2')
res = {}
for k, v in vals.items():
    if target == 'bf16':
        b = bf16(v)
        b.tofile(d + '/' + k + '.want')
        o = (b.astype(np.uint32) << 16).view(np.float32)
        res[k] = {'overflow': int(np.sum(np.isfinite(v) & np.isinf(o))), 'underflow': int(np.sum((v != 0) & ~np.isnan(v) & (o == 0)))}
        continue
    o = v.astype({'f16': np.float16, 'f32': np.float32}[target])
    o.tofile(d + '/' + k + '.want')
    res[k] = {'overflow': int(np.sum(np.isfinite(v) & np.isinf(o))), 'underflow': int(np.sum((v != 0) & ~np.isnan(v) & (o == 0)))}
print(json.dumps(res))
`;

function sameFloats(got: Uint8Array, want: Uint8Array, bytes: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i += bytes) {
    const a = got.subarray(i, i + bytes);
    const b = want.subarray(i, i + bytes);
    if (Buffer.compare(a, b) === 0) continue;
    // NaN payloads are platform-defined (hardware F64→F32) or not part of RNE (BF16); anything else must match bit for bit.
    // (For 2-byte outputs, 0x7c00 < bits & 0x7fff is NaN in F16 and covers BF16 NaNs, > 0x7f80, too.)
    const nan = (x: Uint8Array) => (bytes === 2 ? (new DataView(x.buffer, x.byteOffset).getUint16(0, true) & 0x7fff) > 0x7c00 : Number.isNaN(new DataView(x.buffer, x.byteOffset).getFloat32(0, true)));
    assert.ok(nan(a) && nan(b), `${what}: element ${i / bytes} is ${Buffer.from(a).toString('hex')}, numpy says ${Buffer.from(b).toString('hex')}`);
  }
}

for (const target of ['f16', 'bf16', 'f32'] as const) {
  test(`convert --dtype ${target} matches the numpy oracle byte for byte, reports its counts, copies integers, leaves the input alone`, () => {
    const input = join(dir, 'in.safetensors');
    const before = readFileSync(input);
    const mtime = statSync(input).mtimeMs;
    const out = join(dir, `out-${target}.safetensors`);
    const r = cli('convert', input, out, '--dtype', target, '--verbose');
    assert.equal(r.status, 0, r.stderr);
    const py = spawnSync('python3', ['-c', ORACLE, dir, target], { encoding: 'utf8' });
    assert.equal(py.status, 0, `python3 with numpy is required (apt-get install python3-numpy): ${py.stderr}`);
    const counts = JSON.parse(py.stdout) as Record<string, { overflow: number; underflow: number }>;
    const st = new SafeTensor(fresh(out));
    const to = ({ f16: 'F16', bf16: 'BF16', f32: 'F32' } as const)[target];
    for (const k of ['a', 'b', 'c', 'd']) {
      assert.equal(st.metadata.get(k)!.dtype, to);
      sameFloats(st.getTensor(k), new Uint8Array(readFileSync(join(dir, `${k}.want`))), to === 'F32' ? 4 : 2, `${k} ${inputs[k].dtype}→${to}`);
      const line = r.stdout.split('\n').find((l) => l.startsWith(`${k}: `));
      assert.ok(line, `a report line for ${k}`);
      if (inputs[k].dtype === to) assert.ok(line!.endsWith('(unchanged)') && counts[k].overflow === 0 && counts[k].underflow === 0, line);
      else assert.ok(line!.includes(`${counts[k].overflow} overflowed to ±Inf, ${counts[k].underflow} flushed to zero`), `${line} vs numpy ${JSON.stringify(counts[k])}`);
    }
    if (target === 'f16') assert.ok(counts.a.overflow > 100 && counts.a.underflow > 100, 'the inputs exercise both counts');
    assert.equal(st.metadata.get('e')!.dtype, 'I32');
    assert.deepEqual(st.getTensor('e'), inputs.e.bytes);
    assert.deepEqual(readFileSync(input), before);
    assert.equal(statSync(input).mtimeMs, mtime);
  });
}

test('convert --max-shard-size writes HF shards and an index whose tensors equal the single-file output', async () => {
  const base = join(dir, 'llama');
  await writeLlama(base, { dtype: 'F32', layers: 2, seed: 3 });
  const single = join(dir, 'llama-bf16.safetensors');
  const sharded = join(dir, 'llama-bf16');
  assert.equal(cli('convert', base, single).status, 0);
  const r = cli('convert', base, sharded, '--max-shard-size', '100KB');
  assert.equal(r.status, 0, r.stderr);
  const names = readdirSync(sharded).sort();
  const shards = names.filter((n) => n.endsWith('.safetensors'));
  assert.ok(shards.length >= 3, `${shards.length} shards`);
  shards.forEach((n, i) => assert.equal(n, `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
  const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
  // The npm reader cannot read __metadata__; compare tensor bytes by slicing with our own header parse.
  const whole = fresh(single);
  const tensorsOf = (bytes: Uint8Array) => {
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const h = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
    delete h.__metadata__;
    return Object.fromEntries(Object.entries(h).map(([k, v]: [string, any]) => [k, { dtype: v.dtype, shape: v.shape, data: bytes.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) }]));
  };
  const all = tensorsOf(whole);
  let total = 0;
  for (const n of shards) {
    const part = tensorsOf(fresh(join(sharded, n)));
    const size = Object.values(part).reduce((s, t: any) => s + t.data.length, 0);
    if (Object.keys(part).length > 1) assert.ok(size <= 100_000, `${n} holds ${size} bytes`);
    for (const [k, t] of Object.entries(part)) {
      assert.equal(index.weight_map[k], n);
      assert.deepEqual(t, all[k]);
      total += (t as any).data.length;
    }
  }
  assert.equal(index.metadata.total_size, total);
  assert.equal(Object.keys(index.weight_map).length, Object.keys(all).length);
  for (const t of Object.values(all)) assert.equal((t as any).dtype, 'BF16');
});

test('a failed or cancelled conversion leaves no output', async () => {
  // Bad input: nothing created, not even the output folder.
  const outDir = join(dir, 'never');
  const r = cli('convert', join(dir, 'nope.safetensors'), outDir);
  assert.equal(r.status, 2);
  assert.equal(existsSync(outDir), false);
  // Output would replace the input: refused, input intact.
  const input = join(dir, 'in.safetensors');
  const before = readFileSync(input);
  assert.equal(cli('convert', input, input, '--dtype', 'f16').status, 2);
  assert.deepEqual(readFileSync(input), before);
  // Cancelled after the first progress report: CancelledError, and the folder is as it was.
  const base = join(dir, 'llama');
  const target = join(dir, 'cancelled');
  const ac = new AbortController();
  await assert.rejects(
    convertModel({ input: base, output: target, dtype: 'F16', maxShardBytes: 50_000 }, { signal: ac.signal, progress: () => ac.abort() }),
    (e: unknown) => e instanceof CancelledError,
  );
  assert.equal(existsSync(target), false);
  const kept = join(dir, 'kept');
  mkdirSync(kept);
  const ac2 = new AbortController();
  await assert.rejects(convertModel({ input: base, output: kept, dtype: 'F16' }, { signal: ac2.signal, progress: () => ac2.abort() }), CancelledError);
  assert.deepEqual(readdirSync(kept), []);
});

test('Ctrl-C during convert exits 130 and removes the temp file', async () => {
  // Big enough (≈ 70 MB of F32) that the conversion is still running when the temp file shows up.
  const base = join(dir, 'sigint-in');
  await writeLlama(base, { dtype: 'F32', hidden: 512, intermediate: 1376, layers: 4, vocab: 16000, heads: 8, kvHeads: 8, seed: 4 });
  const outDir = join(dir, 'sigint-out');
  mkdirSync(outDir);
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [CLI, 'convert', base, join(outDir, 'o.safetensors')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  let sawTemp = false;
  for (let i = 0; i < 2000 && child.exitCode === null; i++) {
    if (readdirSync(outDir).some((n) => n.startsWith('.o.safetensors.tmp-'))) {
      sawTemp = true;
      child.kill('SIGINT');
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const code = await exited;
  assert.ok(sawTemp, 'the conversion finished before it could be interrupted');
  assert.equal(code, 130, stderr);
  assert.equal(stderr, 'cancelled\n');
  assert.deepEqual(readdirSync(outDir), []);
});
