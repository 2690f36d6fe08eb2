import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { readGguf } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';
import { estimateGguf, GGUF_TARGETS } from '../../src/pipelines/ggufEstimate';
import { preview } from '../../src/pipelines/quantizePreview';
import { toGguf } from '../../src/pipelines/toGguf';
import { trainSentencePiece, writeBf16Model } from '../gguf/ftypeFixture';

let dir = '';
let folder = '';
let why = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-gguf-estimate-'));
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  folder = join(dir, 'llama');
  // ff 288 is not a multiple of 256: the K-quant mixes fall back to 32-value blocks on ffn_down.
  await writeBf16Model(folder, { arch: 'llama', vocab: 400, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ff: 288, layers: 4, tied: false, ropeTheta: 10000, rmsEps: 1e-5 }, sp.path);
});
after(async () => {
  await disposeBackends();
  await rm(dir, { recursive: true, force: true });
});

async function written(path: string): Promise<{ types: Map<string, string>; dataBytes: number }> {
  const f = await readGguf(await NodeFileSource.open(path));
  try {
    return { types: new Map(f.tensors.map((t) => [t.name, t.type.name])), dataBytes: f.tensors.reduce((s, t) => s + t.byteLength, 0) };
  } finally {
    await f.source.close?.();
  }
}

test('header-only estimate: per file type, the tensor bytes and type counts of the GGUF the converter writes', async (t) => {
  if (why) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const est = await estimateGguf({ input: folder });
  assert.deepEqual(est.estimates.map((e) => e.target), GGUF_TARGETS);
  assert.equal(est.arch, 'llama');
  for (const target of ['F16', 'Q8_0', 'Q4_K_M', 'Q3_K_S', 'Q6_K', 'IQ4_XS'] as const) {
    const out = join(dir, `${target}.gguf`);
    await toGguf({ input: folder, output: out, ftype: target }, { backend: 'cpu' });
    const w = await written(out);
    const e = est.estimates.find((x) => x.target === target)!;
    const counts: Record<string, number> = {};
    for (const type of w.types.values()) counts[type] = (counts[type] ?? 0) + 1;
    assert.deepEqual(e.mix, counts, `${target}: per-type tensor counts`);
    assert.equal(e.bytes, w.dataBytes, `${target}: tensor bytes`);
    assert.ok(e.bytes < (await stat(out)).size, `${target}: the file adds its header`);
    assert.equal(e.sampledTensors, 0, 'no sampling without errors: true');
    assert.equal(e.snrDb, undefined);
  }
  const q4 = est.estimates.find((x) => x.target === 'Q4_K_M')!;
  assert.ok(q4.mix.Q6_K && q4.mix.Q4_K && q4.mix.Q5_0, `Q4_K_M mixes Q4_K, Q6_K and 32-block fallbacks: ${JSON.stringify(q4.mix)}`);
});

test('sampled errors: each tensor counted with the type it gets; more bits, less error', async (t) => {
  if (why) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const est = await estimateGguf({ input: folder, errors: true }, { backend: 'cpu' });
  const by = new Map(est.estimates.map((e) => [e.target, e]));
  for (const f of ['F16', 'BF16', 'F32']) assert.equal(by.get(f as 'F16')!.snrDb, undefined, `${f} is a cast, not sampled`);
  const snr = (f: string) => by.get(f as 'Q2_K')!.snrDb!;
  assert.ok(snr('Q2_K') < snr('Q3_K_S') && snr('Q3_K_S') < snr('Q4_K_S') && snr('Q4_K_S') < snr('Q5_K_S') && snr('Q5_K_S') < snr('Q6_K') && snr('Q6_K') < snr('Q8_0'), JSON.stringify(est.estimates.map((e) => [e.target, e.snrDb])));
  // Q4_K_M gives some tensors Q6_K: better than the pure Q4_K preview, worse than the pure Q6_K one.
  const p = await preview({ input: folder, schemes: ['q4_k', 'q6_k'] }, { backend: 'cpu' });
  const [pq4, pq6] = p.rows.map((r) => r.snrDb!);
  assert.ok(snr('Q4_K_M') > pq4 - 0.5 && snr('Q4_K_M') < pq6, `Q4_K_M ${snr('Q4_K_M')} dB vs q4_k ${pq4}, q6_k ${pq6}`);
  assert.ok(by.get('Q4_K_M')!.sampledTensors > 0);
});

test('a folder the converter refuses: the estimate throws its reason, and nothing is written', async (t) => {
  if (why) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const config = JSON.parse(await readFile(join(folder, 'config.json'), 'utf8'));
  const bad = join(dir, 'bad');
  await writeBf16Model(bad, { arch: 'llama', vocab: 400, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ff: 288, layers: 1, tied: true, ropeTheta: 10000, rmsEps: 1e-5 }, join(folder, 'tokenizer.model'));
  await writeFile(join(bad, 'config.json'), JSON.stringify({ ...config, architectures: ['FalconForCausalLM'], model_type: 'falcon' }));
  await assert.rejects(estimateGguf({ input: bad }), /falcon|Falcon/);
  assert.equal(existsSync(join(dir, 'bad.gguf')), false);
});
