import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { writeLlama } from '../fixtures/llama';
import { quantizeCommand } from '../../src/cli/quantize';
import { disposeBackends } from '../../src/compute/backend';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import type { KQuantType } from '../../src/compute/quant/kquant.cpu';
import { SCHEMES, type KQuantSchemeName } from '../../src/compute/quant/schemes';
import { loadGgml } from '../gguf/ggmlOracle';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { gguf: parseGguf } = require('@huggingface/gguf') as typeof import('@huggingface/gguf');

/**
 * `quantize --scheme q4_k` (and the other new schemes) end to end: the GGUF and the
 * ggml-blocks safetensors hold exactly the bytes libggml's `ggml_quantize_chunk` makes
 * from the same rows, and our dequantizer reads them back as libggml's does.
 */
const loaded = loadGgml();
const CI = process.env.CI === 'true';
const skip = typeof loaded === 'string' ? `libggml oracle unavailable: ${loaded}` : false;
if (typeof loaded === 'string') {
  if (CI) test('libggml oracle loads', () => assert.fail(loaded));
  else console.log(`# skipping the ggml oracle tests: ${loaded}`);
}

let dir: string;
let input: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-kq-'));
  input = join(dir, 'in');
  // Rows of 256 and 512 so that every 256-value super-block type applies.
  await writeLlama(input, { hidden: 256, intermediate: 512, layers: 1, vocab: 64, heads: 4, kvHeads: 2, dtype: 'BF16' });
});
after(async () => {
  await disposeBackends();
  await rm(dir, { recursive: true, force: true });
});

async function run(argv: string[]): Promise<number> {
  return quantizeCommand.run(argv, { stdout: new PassThrough(), stderr: new PassThrough(), signal: new AbortController().signal });
}

/** The input's BF16 tensors decoded to f32 (a test-local safetensors reader). */
async function inputF32(): Promise<Map<string, { shape: number[]; x: Float32Array }>> {
  const files = (await readdir(input)).filter((f) => f.endsWith('.safetensors'));
  const out = new Map<string, { shape: number[]; x: Float32Array }>();
  for (const f of files) {
    const buf = new Uint8Array(await readFile(join(input, f)));
    const n = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [name, h] of Object.entries(header)) {
      if (name === '__metadata__' || h.dtype !== 'BF16') continue;
      const raw = buf.slice(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
      const u16 = new Uint16Array(raw.buffer);
      const bits = new Uint32Array(u16.length);
      for (let i = 0; i < u16.length; i++) bits[i] = u16[i] << 16;
      out.set(name, { shape: h.shape, x: new Float32Array(bits.buffer) });
    }
  }
  return out;
}

const CASES: KQuantSchemeName[] = ['q4_k', 'q6_k', 'q2_k', 'q3_k', 'q5_k', 'q5_0', 'q5_1', 'iq4_nl', 'iq4_xs'];

for (const scheme of CASES) {
  test(`quantize --scheme ${scheme}: GGUF tensors are ggml_quantize_chunk's bytes and read back as ggml reads them`, { skip }, async () => {
    const g = loaded as Exclude<typeof loaded, string>;
    const s = SCHEMES[scheme];
    const type = scheme.toUpperCase() as KQuantType;
    const out = join(dir, `${scheme}.gguf`);
    assert.equal(await run([input, out, '--scheme', scheme, '--backend', 'cpu']), 0);
    const parsed = await parseGguf(out, { allowLocalFile: true });
    assert.equal((parsed.metadata as Record<string, unknown>)['general.file_type'], s.fileType);
    const file = new Uint8Array(await readFile(out));
    const base = Number(parsed.tensorDataOffset);
    const src = await inputF32();
    let checked = 0;
    for (const info of parsed.tensorInfos) {
      if (info.dtype !== s.ggmlType) continue;
      const t = src.get(info.name);
      assert.ok(t, info.name);
      const [rows, cols] = t.shape;
      const bytes = file.subarray(base + Number(info.offset), base + Number(info.offset) + (rows * cols / s.blockSize) * s.blockBytes);
      assert.deepEqual(bytes, g.quantize(type, t.x, rows, cols), `${scheme} ${info.name}`);
      const ours = new Float32Array(rows * cols);
      dequantize(type, bytes, ours);
      assert.deepEqual(new Uint32Array(ours.buffer), new Uint32Array(g.toFloat(type, bytes, rows * cols).buffer), info.name);
      checked++;
    }
    assert.ok(checked >= 7, `${scheme}: ${checked} quantized tensors checked`);
  });
}

test('quantize --scheme q6_k --format safetensors: U8 ggml blocks with their layout', { skip }, async () => {
  const g = loaded as Exclude<typeof loaded, string>;
  const out = join(dir, 'q6st');
  assert.equal(await run([input, out, '--scheme', 'q6_k', '--format', 'safetensors', '--backend', 'cpu']), 0);
  const files = (await readdir(out)).filter((f) => f.endsWith('.safetensors'));
  const src = await inputF32();
  let checked = 0;
  for (const f of files) {
    const buf = new Uint8Array(await readFile(join(out, f)));
    const n = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [name, h] of Object.entries(header)) {
      if (name === '__metadata__' || h.dtype !== 'U8') continue;
      const t = src.get(name)!;
      const [rows, cols] = t.shape;
      assert.deepEqual(h.shape, [rows, (cols / 256) * 210]);
      assert.deepEqual(buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]), g.quantize('Q6_K', t.x, rows, cols), name);
      checked++;
    }
  }
  assert.ok(checked >= 7, `${checked} tensors checked`);
});
