// A tensor holding NaN or ±Inf is kept, with a line naming it and the count; --allow-nonfinite forces it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { quantize } from '../../src/pipelines/quantize';
import { nonFiniteSkipLines } from '../../src/pipelines/quantizeReport';

const dir = mkdtempSync(join(tmpdir(), 'tw-rel-quant-'));
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});
const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TW_CPU_WORKERS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const N = 4 * 64;
const bad = new Float32Array(N).map((_, i) => Math.sin(i) * 0.1);
bad[5] = NaN;
bad[70] = Infinity;
bad[200] = -Infinity;
const good = new Float32Array(N).map((_, i) => Math.cos(i) * 0.1);
const IN = join(dir, 'in.safetensors');
{
  let json = JSON.stringify({ 'bad.weight': { dtype: 'F32', shape: [4, 64], data_offsets: [0, N * 4] }, 'good.weight': { dtype: 'F32', shape: [4, 64], data_offsets: [N * 4, 2 * N * 4] } });
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const h = Buffer.from(json);
  const out = Buffer.alloc(8 + h.length + 2 * N * 4);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  Buffer.from(bad.buffer).copy(out, 8 + h.length);
  Buffer.from(good.buffer).copy(out, 8 + h.length + N * 4);
  writeFileSync(IN, out);
}

/** The header and the bytes of one tensor of a safetensors file, read by hand. */
function tensorOf(path: string, name: string): { dtype: string; bytes: Buffer } {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const [s, e] = h[name].data_offsets;
  return { dtype: h[name].dtype, bytes: b.subarray(8 + n + s, 8 + n + e) };
}

it('the CLI keeps a tensor with NaN/Inf in its dtype, bytes unchanged, and names it with the count', () => {
  const out = join(dir, 'q.safetensors');
  const r = cli('quantize', IN, out, '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^bad\.weight: kept \(holds 3 NaN\/Inf values, kept in F32; --allow-nonfinite quantizes it anyway\)$/m);
  assert.match(r.stdout, /quantized 1 of 2 tensors/);
  // The error over quantized tensors is finite again.
  assert.match(r.stdout, /^error over quantized tensors: RMSE [0-9.e-]+, max\|err\| [0-9.e-]+, SNR [0-9.]+ dB/m);
  const kept = tensorOf(out, 'bad.weight');
  assert.equal(kept.dtype, 'F32');
  assert.ok(kept.bytes.equals(Buffer.from(bad.buffer)));
  assert.equal(tensorOf(out, 'good.weight').dtype, 'U8');
});

it('--allow-nonfinite quantizes it anyway', () => {
  const out = join(dir, 'forced.safetensors');
  const r = cli('quantize', IN, out, '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu', '--allow-nonfinite');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /quantized 2 of 2 tensors/);
  assert.doesNotMatch(r.stdout, /bad\.weight: kept/);
  assert.equal(tensorOf(out, 'bad.weight').dtype, 'U8');
});

it('the report carries the count, and the VS Code command gets the same skip lines', async () => {
  const r = await quantize({ input: IN, output: join(dir, 'api.safetensors'), scheme: 'q8_0', format: 'safetensors' }, { backend: 'cpu' });
  const t = r.tensors.find((x) => x.name === 'bad.weight')!;
  assert.equal(t.action, 'kept');
  assert.equal(t.nonFinite, 3);
  assert.deepEqual(nonFiniteSkipLines(r), ['bad.weight: kept (holds 3 NaN/Inf values, kept in F32; --allow-nonfinite quantizes it anyway)']);
  const forced = await quantize({ input: IN, output: join(dir, 'api2.safetensors'), scheme: 'q8_0', format: 'safetensors', allowNonfinite: true }, { backend: 'cpu' });
  assert.deepEqual(nonFiniteSkipLines(forced), []);
});

// On the CPU a NaN/Inf shows itself in a kernel's error sums, and only then is the job run again
// with the tensor kept: every kernel family must reveal it, in both output formats, leaving no
// temporary file behind, and the tensors after it must come out as a clean run writes them.
for (const [scheme, format] of [
  ['q8_0', 'gguf'],
  ['q4_k', 'gguf'],
  ['q2_k', 'gguf'],
  ['q3_k', 'gguf'],
  ['q5_k', 'gguf'],
  ['q6_k', 'gguf'],
  ['q5_0', 'gguf'],
  ['q5_1', 'gguf'],
  ['q4_1', 'gguf'],
  ['iq4_nl', 'gguf'],
  ['iq4_xs', 'gguf'],
  ['q4_0', 'safetensors'],
  ['int8-channel', 'safetensors'],
  ['fp8-e4m3', 'safetensors'],
  ['fp8-block', 'safetensors'],
  ['mxfp4', 'safetensors'],
] as const) {
  it(`${scheme} (${format}): the tensor with NaN/Inf is found by the kernel's sums, kept, and nothing else is left`, async () => {
    const sub = mkdtempSync(join(dir, `${scheme}-`));
    const rows = 4;
    const cols = 256;
    const n = rows * cols;
    const first = new Float32Array(n).map((_, i) => Math.cos(i * 0.7) * 0.05);
    const poisoned = new Float32Array(n).map((_, i) => Math.sin(i) * 0.1);
    poisoned[n - 3] = NaN;
    poisoned[17] = -Infinity;
    const last = new Float32Array(n).map((_, i) => Math.sin(i * 1.3) * 0.2);
    const write = (path: string, tensors: [string, Float32Array][]): void => {
      const header: Record<string, unknown> = {};
      tensors.forEach(([name], k) => (header[name] = { dtype: 'F32', shape: [rows, cols], data_offsets: [k * n * 4, (k + 1) * n * 4] }));
      let json = JSON.stringify(header);
      json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
      const h = Buffer.from(json);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(path, Buffer.concat([len, h, ...tensors.map(([, v]) => Buffer.from(v.buffer))]));
    };
    const dirty = join(sub, 'dirty.safetensors');
    const clean = join(sub, 'clean.safetensors');
    write(dirty, [['a.weight', first], ['b.weight', poisoned], ['c.weight', last]]);
    write(clean, [['a.weight', first], ['b.weight', new Float32Array(n)], ['c.weight', last]]);
    const ext = format === 'gguf' ? 'gguf' : 'safetensors';
    const r = await quantize({ input: dirty, output: join(sub, `out-dirty.${ext}`), scheme, format }, { backend: 'cpu' });
    const b = r.tensors.find((x) => x.name === 'b.weight')!;
    assert.equal(b.action, 'kept');
    assert.equal(b.nonFinite, 2);
    assert.deepEqual(r.tensors.filter((x) => x.action === 'quantized').map((x) => x.name), ['a.weight', 'c.weight']);
    assert.ok(Number.isFinite(r.totals.snrDb!), `SNR ${r.totals.snrDb}`);
    // Only the inputs and the one output: the abandoned attempt left nothing.
    assert.deepEqual(readdirSync(sub).sort(), ['clean.safetensors', 'dirty.safetensors', `out-dirty.${ext}`]);
    // a and c are byte for byte what a run over clean data writes for them.
    await quantize({ input: clean, output: join(sub, `out-clean.${ext}`), scheme, format, keep: ['b.weight'] }, { backend: 'cpu' });
    const got = readFileSync(join(sub, `out-dirty.${ext}`));
    const want = readFileSync(join(sub, `out-clean.${ext}`));
    if (format === 'safetensors') {
      const names = Object.keys(JSON.parse(want.subarray(8, 8 + Number(want.readBigUInt64LE(0))).toString('utf8'))).filter((k) => k !== '__metadata__' && !k.startsWith('b.'));
      assert.ok(names.length >= 2);
      for (const name of names) assert.ok(tensorOf(join(sub, `out-dirty.${ext}`), name).bytes.equals(tensorOf(join(sub, `out-clean.${ext}`), name).bytes), name);
      assert.ok(tensorOf(join(sub, `out-dirty.${ext}`), 'b.weight').bytes.equals(Buffer.from(poisoned.buffer)));
    } else {
      // Same layout (b is F32 in both), so the files differ only in b's bytes.
      assert.equal(got.length, want.length);
      let diff = 0;
      for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) diff++;
      assert.ok(diff > 0 && diff <= n * 4, `${diff} bytes differ`);
      assert.ok(got.includes(Buffer.from(poisoned.buffer)));
    }
  });
}
