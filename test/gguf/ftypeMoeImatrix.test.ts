import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readGguf } from '../../src/format/gguf/reader';
import { gguf, GGML_TYPE, writeGguf, type GgufTensor } from '../../src/format/gguf/writer';
import { NodeFileSource } from '../../src/format/source';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { FTYPES } from '../../src/pipelines/llamaFtype';
import { compare } from './ggufCompare';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';
import { writeMoe } from './moeFixture';

/**
 * A GGUF imatrix for a 4-expert model: each expert's rows take their own slice of the
 * weights (in_sum2 / that expert's count; an expert never routed to, count 0, gets ones).
 * Our chunks must never straddle two experts; the bytes must equal llama_model_quantize's.
 */

const EXPERTS = 4;
// Counts per expert: one expert never routed to.
const COUNTS = [7, 0, 3, 12];

let dir = '';
let oracle: LlamaQuantize | undefined;
let why = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-moe-im-'));
  const o = loadLlamaQuantize();
  if (typeof o === 'string') why = o;
  else oracle = o;
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('MoE --imatrix (per-expert slices and counts): types and bytes equal llama_model_quantize', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const input = join(dir, 'moe.gguf');
  await writeMoe(input, EXPERTS);
  const f = await readGguf(await NodeFileSource.open(input));
  const tensors: GgufTensor[] = [];
  const normalized = new Map<string, Float32Array>();
  let x = 12345;
  for (const ti of f.tensors) {
    if (ti.ne.length < 2 || ti.name === 'token_embd.weight' || ti.name.includes('gate_inp')) continue;
    const experts = ti.ne[2] ?? 1;
    const counts = ti.ne.length === 3 ? COUNTS : [5];
    const sums = new Float32Array(ti.ne[0] * experts);
    for (let i = 0; i < sums.length; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      sums[i] = 0.01 + (x / 2147483648) ** 2 * (i % 29 === 0 ? 900 : 20);
    }
    const ne0 = ti.ne[0];
    normalized.set(ti.name, sums.map((v, i) => (counts[Math.floor(i / ne0)] > 0 ? Math.fround(v / counts[Math.floor(i / ne0)]) : 1)));
    tensors.push({ name: `${ti.name}.in_sum2`, dims: [ne0, experts], ggmlType: GGML_TYPE.F32, byteLength: sums.byteLength, data: new Uint8Array(sums.buffer) });
    const c = new Float32Array(counts);
    tensors.push({ name: `${ti.name}.counts`, dims: [1, experts], ggmlType: GGML_TYPE.F32, byteLength: c.byteLength, data: new Uint8Array(c.buffer) });
  }
  await f.source.close();
  const im = join(dir, 'moe-imatrix.gguf');
  await writeGguf(im, [['imatrix.datasets', gguf.arr('string', ['x'])], ['imatrix.chunk_count', gguf.u32(1)], ['imatrix.chunk_size', gguf.u32(512)]], tensors);
  for (const ftype of ['Q4_K_M', 'Q3_K_M'] as const) {
    const ours = join(dir, `ours-${ftype}.gguf`);
    const theirs = join(dir, `theirs-${ftype}.gguf`);
    await quantizeGgufFtype({ input, output: ours, ftype, imatrix: im }, { backend: 'cpu' });
    oracle.quantize(input, theirs, { ftype: FTYPES[ftype].id, imatrix: normalized });
    const types = await compare(ours, theirs);
    console.log(`# ${EXPERTS} experts, ${ftype}, imatrix: ${types.size} tensors equal`);
  }
});
