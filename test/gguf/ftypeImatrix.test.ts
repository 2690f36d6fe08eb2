import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readImatrix } from '../../src/format/imatrix';
import { readGguf } from '../../src/format/gguf/reader';
import { gguf, GGML_TYPE, writeGguf, type GgufTensor } from '../../src/format/gguf/writer';
import { NodeFileSource } from '../../src/format/source';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { FTYPES, type FtypeName } from '../../src/pipelines/llamaFtype';
import { toGguf } from '../../src/pipelines/toGguf';
import { trainSentencePiece, writeBf16Model } from './ftypeFixture';
import { compare } from './ggufCompare';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';
import type { TinySpec } from './toGgufFixture';

/**
 * `--imatrix`: a legacy .dat and a GGUF importance matrix, with call counts to divide by,
 * read by our loader; the file types quantized with them must equal llama_model_quantize
 * given the same weights (normalized here independently: value / ncall, in_sum2 / count).
 * The imatrix changes the K-quant, Q5_0/Q5_1 and IQ4 searches and two of the type rules.
 */

const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 320, layers: 8, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };
const NCALL = 3;
const COUNT = 5;

let dir = '';
let oracle: LlamaQuantize | undefined;
let why = '';
let folder = '';
let base = '';
/** Raw values per tensor, as the files store them. */
const raw = new Map<string, Float32Array>();

function positive(seed: number, n: number): Float32Array {
  let x = seed | 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const u = (x >>> 0) / 4294967296;
    // A few columns far more important than the rest, as in real activations.
    out[i] = 0.05 + u * u * (i % 37 === 0 ? 400 : 6);
  }
  return out;
}

function writeLegacy(path: string): void {
  const parts: Buffer[] = [];
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  i32(raw.size);
  for (const [name, v] of raw) {
    i32(Buffer.byteLength(name));
    parts.push(Buffer.from(name));
    i32(NCALL);
    i32(v.length);
    parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  }
  i32(NCALL);
  i32(4);
  parts.push(Buffer.from('wiki'));
  writeFileSync(path, Buffer.concat(parts));
}

async function writeGgufImatrix(path: string): Promise<void> {
  const tensors: GgufTensor[] = [];
  for (const [name, v] of raw) {
    const counts = new Float32Array([COUNT]);
    tensors.push({ name: `${name}.in_sum2`, dims: [v.length, 1], ggmlType: GGML_TYPE.F32, byteLength: v.byteLength, data: new Uint8Array(v.buffer.slice(0)) });
    tensors.push({ name: `${name}.counts`, dims: [1, 1], ggmlType: GGML_TYPE.F32, byteLength: 4, data: new Uint8Array(counts.buffer) });
  }
  const kv: Array<[string, ReturnType<typeof gguf.u32>]> = [
    ['general.type', gguf.str('imatrix')],
    ['imatrix.datasets', gguf.arr('string', ['wiki'])],
    ['imatrix.chunk_count', gguf.u32(COUNT)],
    ['imatrix.chunk_size', gguf.u32(512)],
  ];
  await writeGguf(path, kv, tensors);
}

const divided = (by: number) => new Map([...raw].map(([n, v]) => [n, v.map((x) => Math.fround(x / by))]));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-imatrix-'));
  const o = loadLlamaQuantize();
  if (typeof o === 'string') return void (why = o);
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  oracle = o;
  folder = join(dir, 'llama');
  await writeBf16Model(folder, SPEC, sp.path);
  base = join(dir, 'base-bf16.gguf');
  await toGguf({ input: folder, output: base, ftype: 'BF16' });
  const f = await readGguf(await NodeFileSource.open(base));
  let seed = 5;
  // llama-imatrix records every matrix multiplied by activations: not the token embedding.
  for (const t of f.tensors) if (t.ne.length === 2 && t.name !== 'token_embd.weight') raw.set(t.name, positive(seed++ * 40503, t.ne[0]));
  await f.source.close();
  writeLegacy(join(dir, 'im.dat'));
  await writeGgufImatrix(join(dir, 'im.gguf'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('the loaders divide as llama-quantize does: legacy values / ncall, GGUF in_sum2 / count', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const legacy = await readImatrix(join(dir, 'im.dat'));
  const g = await readImatrix(join(dir, 'im.gguf'));
  assert.equal(legacy.format, 'legacy');
  assert.deepEqual(legacy.datasets, ['wiki']);
  assert.equal(g.format, 'gguf');
  assert.deepEqual(g.datasets, ['wiki']);
  for (const [name, v] of divided(NCALL)) assert.deepEqual(legacy.entries.get(name), v, name);
  for (const [name, v] of divided(COUNT)) assert.deepEqual(g.entries.get(name), v, name);
});

const CASES: FtypeName[] = ['Q4_K_M', 'Q4_K_S', 'Q5_K_M', 'Q6_K', 'Q3_K_M', 'IQ4_XS', 'IQ4_NL', 'Q8_0'];

for (const ftype of CASES) {
  test(`--ftype ${ftype} --imatrix (legacy from the folder, GGUF from the BF16 GGUF): bytes equal llama_model_quantize`, async (t) => {
    if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
    const a = join(dir, `a-${ftype}.gguf`);
    const b = join(dir, `b-${ftype}.gguf`);
    await toGguf({ input: folder, output: a, ftype, imatrix: join(dir, 'im.dat') }, { backend: 'cpu' });
    oracle.quantize(base, b, { ftype: FTYPES[ftype].id, imatrix: divided(NCALL) });
    const types = await compare(a, b);
    if (ftype === 'Q4_K_M') {
      // The weights must change the result, or the comparison above proves nothing about them.
      const plain = join(dir, 'plain-Q4_K_M.gguf');
      await toGguf({ input: folder, output: plain, ftype }, { backend: 'cpu' });
      await assert.rejects(compare(plain, a), /first difference at byte \d+/);
    }
    const c = join(dir, `c-${ftype}.gguf`);
    const d = join(dir, `d-${ftype}.gguf`);
    await quantizeGgufFtype({ input: base, output: c, ftype, imatrix: join(dir, 'im.gguf') }, { backend: 'cpu' });
    oracle.quantize(base, d, { ftype: FTYPES[ftype].id, imatrix: divided(COUNT) });
    await compare(c, d);
    console.log(`# ${ftype} with imatrix: ${types.size} tensors equal (${[...new Set(types.values())].sort().join(' ')}), both formats`);
  });
}

test('an imatrix with a type whose weighted search is not implemented (Q4_0) is refused before writing', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const out = join(dir, 'q2k.gguf');
  await assert.rejects(toGguf({ input: folder, output: out, ftype: 'Q2_K', imatrix: join(dir, 'im.dat') }, { backend: 'cpu' }), /Q4_0 with an importance matrix/);
});
