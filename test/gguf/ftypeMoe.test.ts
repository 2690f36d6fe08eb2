import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readGguf, readTensorBytes } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { FTYPES, type FtypeName } from '../../src/pipelines/llamaFtype';
import { loadLlamaQuantize, type LlamaQuantize } from './llamaQuantizeOracle';
import { writeMoe } from './moeFixture';

/**
 * A Mixtral-style model (llama architecture, experts stacked in 3-D ffn_*_exps tensors, an
 * F32 router) written as a BF16 GGUF: `quantize --ftype` of it must equal libllama's
 * `llama_model_quantize` tensor for tensor and byte for byte. Eight experts reach the
 * rules llama.cpp keeps for 8-expert models (attn_v and attn_k at Q8_0, attn_output at
 * Q5_K); four experts the general expert rules (layers taken from the names).
 */

let dir = '';
let oracle: LlamaQuantize | undefined;
let why = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-moe-'));
  const o = loadLlamaQuantize();
  if (typeof o === 'string') why = o;
  else oracle = o;
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function tensorsOf(path: string): Promise<Map<string, { type: string; bytes: Uint8Array }>> {
  const f = await readGguf(await NodeFileSource.open(path));
  const out = new Map<string, { type: string; bytes: Uint8Array }>();
  try {
    for (const t of f.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await readTensorBytes(f, t, 0, bytes);
      out.set(t.name, { type: t.type.name, bytes });
    }
  } finally {
    await f.source.close?.();
  }
  return out;
}

for (const experts of [8, 4]) {
  test(`MoE with ${experts} experts: --ftype types and bytes equal llama_model_quantize`, async (t) => {
    if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
    const input = join(dir, `moe${experts}.gguf`);
    await writeMoe(input, experts);
    // Eight experts reach fewer distinct rules; three file types cover them at a third of the time.
    const ftypes: FtypeName[] = experts === 8 ? ['Q4_K_M', 'Q3_K_M', 'Q2_K'] : ['Q4_K_M', 'Q3_K_M', 'Q2_K', 'Q5_K_M', 'IQ4_XS'];
    for (const ftype of ftypes) {
      const ours = join(dir, `ours-${experts}-${ftype}.gguf`);
      const theirs = join(dir, `theirs-${experts}-${ftype}.gguf`);
      await quantizeGgufFtype({ input, output: ours, ftype }, { backend: 'cpu' });
      oracle.quantize(input, theirs, { ftype: FTYPES[ftype].id });
      const [a, b] = [await tensorsOf(ours), await tensorsOf(theirs)];
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
      for (const [name, y] of b) {
        const x = a.get(name)!;
        assert.equal(x.type, y.type, `${ftype} ${name}: type`);
        assert.ok(Buffer.from(x.bytes).equals(Buffer.from(y.bytes)), `${ftype} ${name} (${y.type}): bytes differ`);
      }
      if (experts === 8) {
        assert.equal(b.get('blk.3.attn_v.weight')!.type, 'Q8_0');
        assert.equal(b.get('blk.3.attn_k.weight')!.type, 'Q8_0');
      }
      const mix = [...new Set([...b.values()].map((v) => v.type))].sort().join(' ');
      console.log(`# ${experts} experts, ${ftype}: ${b.size} tensors equal (${mix})`);
    }
  });
}

test('80 layers with grouped KV heads (llama.cpp\'s 70B size): attn_v moves up to Q5_K; types and bytes equal llama_model_quantize', async (t) => {
  if (!oracle) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const input = join(dir, 'deep.gguf');
  await writeMoe(input, 0, 80);
  const ours = join(dir, 'deep-ours.gguf');
  const theirs = join(dir, 'deep-theirs.gguf');
  await quantizeGgufFtype({ input, output: ours, ftype: 'Q3_K_S' }, { backend: 'cpu' });
  oracle.quantize(input, theirs, { ftype: FTYPES.Q3_K_S.id });
  const [a, b] = [await tensorsOf(ours), await tensorsOf(theirs)];
  for (const [name, y] of b) {
    assert.equal(a.get(name)!.type, y.type, `${name}: type`);
    assert.ok(Buffer.from(a.get(name)!.bytes).equals(Buffer.from(y.bytes)), `${name}: bytes differ`);
  }
  assert.equal(b.get('blk.40.attn_v.weight')!.type, 'Q5_K');
  assert.equal(b.get('blk.40.attn_q.weight')!.type, 'Q3_K');
});
