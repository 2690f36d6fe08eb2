import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { extractLoraCommand } from '../../src/cli/extractLora';
import { disposeBackends } from '../../src/compute/backend';
import { FormatError } from '../../src/format/errors';
import { extractLora } from '../../src/pipelines/extractLora';
import { rankForEnergy } from '../../src/pipelines/loraRank';
import { adapterProduct, denseDelta, factors, gen, mul, oracle, plus, pythonHas, relMax, writeTensors } from './loraFixtures';

const root = mkdtempSync(join(tmpdir(), 'tw-extract-lora-'));
const base = join(root, 'base.safetensors');
const tuned = join(root, 'tuned.safetensors');
const Q = 'model.layers.0.self_attn.q_proj';
const D = 'model.layers.0.mlp.down_proj';
const DENSE = 'model.layers.1.mlp.up_proj';
/** The known adapter products the fine-tune was made from. */
const known = new Map<string, Float64Array>();
const noPython = !pythonHas('numpy, safetensors') && 'python3 with numpy and safetensors is not installed';
const noPeft = !pythonHas('peft, torch, safetensors') && 'python3 with peft and torch is not installed';

before(async () => {
  const q = gen(`${Q}.weight`, 'F32', [96, 80], 1, 0.05);
  const d = gen(`${D}.weight`, 'F32', [64, 120], 2, 0.05);
  const up = gen(`${DENSE}.weight`, 'F32', [200, 160], 3, 0.05);
  const norm = gen('model.layers.0.input_layernorm.weight', 'F32', [80], 4);
  const emb = gen('model.embed_tokens.weight', 'F32', [50, 80], 5);
  const fq = factors(96, 80, 8, 11);
  const fd = factors(64, 120, 3, 12);
  known.set(Q, mul(fq.b, fq.a, 96, 8, 80));
  known.set(D, mul(fd.b, fd.a, 64, 3, 120));
  await writeTensors(base, [q, d, up, norm, emb]);
  await writeTensors(tuned, [plus(q, known.get(Q)!), plus(d, known.get(D)!), plus(up, denseDelta(200, 160, 13)), plus(norm, new Float64Array(80).fill(0.01)), emb]);
});

after(async () => {
  rmSync(root, { recursive: true, force: true });
  await disposeBackends();
});

async function cli(argv: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (x) => (out += x));
  const code = await extractLoraCommand.run(argv, { stdout, stderr, signal: new AbortController().signal });
  return { code, out };
}

describe('extract-lora', () => {
  it('gives back a known rank-8 adapter’s product (and a rank-3 one’s at rank 8) within float rounding', async () => {
    const out = join(root, 'r8');
    const r = await extractLora({ base, finetuned: tuned, outDir: out, rank: 8 }, { backend: 'cpu' });
    for (const m of [Q, D]) {
      const p = adapterProduct(out, m);
      assert.equal(p.rank, 8);
      // Δ is read back from F32 storage (W + BA rounded) and sketched in f32: errors of a few
      // f32 ulps of the weights, far below the product's own size.
      const e = relMax(p.values, known.get(m)!);
      assert.ok(e < 2e-5, `${m}: max |B·A − known| / max |known| = ${e}`);
      const mod = r.modules.find((x) => x.module === m)!;
      // All of ‖Δ‖², up to the f32 sums of the sketch products.
      assert.ok(mod.energy > 1 - 1e-6, `${m} energy ${mod.energy}`);
    }
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.r, 8);
    assert.equal(cfg.lora_alpha, 8);
    assert.deepEqual(cfg.target_modules, [D, Q, DENSE].sort());
    assert.deepEqual(cfg.rank_pattern, {});
    assert.deepEqual(r.skipped, [{ name: 'model.layers.0.input_layernorm.weight', reason: '1-D (LoRA covers 2-D weights)' }]);
  });

  it('on a dense delta keeps the energy of the exact truncated SVD (numpy) within 0.5%', { skip: noPython }, async () => {
    const out = join(root, 'dense');
    const ranks = [4, 16, 32];
    const exact = oracle('svd', base, tuned, `${DENSE}.weight`, ...ranks.map(String)) as Record<string, number>;
    for (const rank of ranks) {
      const r = await extractLora({ base, finetuned: tuned, outDir: out, rank }, { backend: 'cpu' });
      const m = r.modules.find((x) => x.module === DENSE)!;
      assert.equal(m.exact, false, 'the sketch must not span the whole matrix, or nothing is estimated');
      const rel = Math.abs(m.energy - exact[rank]) / exact[rank];
      assert.ok(rel < 0.005, `rank ${rank}: energy ${m.energy} vs exact ${exact[rank]} (${(100 * rel).toFixed(3)}%)`);
      // The adapter holds what the report says: ‖B·A‖² / ‖Δ‖² is the energy kept (the factors' columns are orthogonal).
      assert.equal(adapterProduct(out, DENSE).rank, rank);
    }
  });

  it('with --energy picks a rank per module, writes rank_pattern, lists the dense module with the rank it needs', async () => {
    const out = join(root, 'energy');
    const { code, out: text } = await cli([base, tuned, out, '--energy', '0.999', '--rank', '12']);
    assert.equal(code, 0);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    const ranks = { [Q]: 8, [D]: 3, [DENSE]: 12 };
    for (const [m, r] of Object.entries(ranks)) assert.equal(cfg.rank_pattern[m] ?? cfg.r, r, m);
    for (const [m, r] of Object.entries(ranks)) assert.equal(cfg.alpha_pattern[m] ?? cfg.lora_alpha, r, m);
    assert.match(text, new RegExp(`not low-rank[^\\n]*\\n  ${DENSE.replace(/\./g, '\\.')} .*needs rank ≥? ?\\d+`));
  });

  it('PEFT loads the extracted adapter onto the base and merges to BASE + B·A', { skip: noPeft }, async () => {
    const out = join(root, 'energy-peft');
    await extractLora({ base, finetuned: tuned, outDir: out, energy: 0.999, rank: 12 }, { backend: 'cpu' });
    const r = oracle('peft', base, out) as { modules: Record<string, { maxAbs: number; scale: number; rank: number }> };
    assert.deepEqual(Object.keys(r.modules).sort(), [D, Q, DENSE].sort());
    for (const [m, x] of Object.entries(r.modules)) {
      assert.equal(x.scale, 1, `${m}: PEFT's scale`);
      // merged weights are F32: one rounding of W + B·A.
      assert.ok(x.maxAbs < 1e-6, `${m}: ${x.maxAbs}`);
    }
    assert.deepEqual(Object.fromEntries(Object.entries(r.modules).map(([m, x]) => [m, x.rank])), { [Q]: 8, [D]: 3, [DENSE]: 12 });
  });

  it('refuses an output over an input, writing nothing; refuses bad arguments', async () => {
    const out = join(root, 'clash');
    const clashDir = join(root, 'clashdir');
    await writeTensors(join(root, 'c-base.safetensors'), [gen('m.weight', 'F32', [8, 8], 1)]);
    mkdirSync(clashDir, { recursive: true });
    await writeTensors(join(clashDir, 'adapter_model.safetensors'), [gen('m.weight', 'F32', [8, 8], 2)]);
    await assert.rejects(extractLora({ base: join(root, 'c-base.safetensors'), finetuned: join(clashDir, 'adapter_model.safetensors'), outDir: clashDir, rank: 2 }, { backend: 'cpu' }), (e: unknown) => e instanceof FormatError && e.code === 'output_is_input');
    assert.equal(existsSync(join(clashDir, 'adapter_config.json')), false);
    await assert.rejects(cli([base, tuned, out]), /--rank R or --energy E/);
    await assert.rejects(cli([base, tuned, out, '--energy', '1.5']), /--energy/);
    assert.equal(existsSync(out), false);
  });

  it('the fixed seed gives the same adapter bytes run after run', async () => {
    const x = join(root, 'det-1');
    const y = join(root, 'det-2');
    await extractLora({ base, finetuned: tuned, outDir: x, rank: 4 }, { backend: 'cpu' });
    await extractLora({ base, finetuned: tuned, outDir: y, rank: 4 }, { backend: 'cpu' });
    assert.ok(readFileSync(join(x, 'adapter_model.safetensors')).equals(readFileSync(join(y, 'adapter_model.safetensors'))));
    const other = join(root, 'det-3');
    await extractLora({ base, finetuned: tuned, outDir: other, rank: 4, seed: 7 }, { backend: 'cpu' });
    assert.ok(!readFileSync(join(x, 'adapter_model.safetensors')).equals(readFileSync(join(other, 'adapter_model.safetensors'))), 'another seed sketches differently');
  });

  it('rankForEnergy: smallest rank reaching the share, the rank needed beyond the cap, a lower bound beyond the values', () => {
    const s = [3, 2, 1, 0.5];
    const f = 9 + 4 + 1 + 0.25 + 0.75;
    assert.deepEqual(rankForEnergy(s, f, 4, 0.7, 10), { rank: 2, energy: 13 / 15 });
    assert.deepEqual(rankForEnergy(s, f, 2, 0.9, 10), { rank: 2, energy: 13 / 15, rankNeeded: 3 });
    // 0.75 of ‖Δ‖² is beyond the four values, each further one ≤ 0.25: at least 3 more for 0.99.
    assert.deepEqual(rankForEnergy(s, f, 4, 0.99, 10), { rank: 4, energy: 14.25 / 15, rankNeeded: 4 + Math.ceil((0.99 - 14.25 / 15) * 15 / 0.25), rankNeededAtLeast: true });
    assert.deepEqual(rankForEnergy(s, f, 3, undefined, 10), { rank: 3, energy: 14 / 15 });
  });
});
