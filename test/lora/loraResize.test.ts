import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loraResizeCommand } from '../../src/cli/loraResize';
import { FormatError } from '../../src/format/errors';
import { loraResize } from '../../src/pipelines/loraResize';
import { svdSmall } from '../../src/pipelines/svdSmall';
import { writePeft } from '../merge/mergeFixtures';
import { adapterProduct, gen, mul, oracle, pythonHas, relMax } from './loraFixtures';

const root = mkdtempSync(join(tmpdir(), 'tw-lora-resize-'));
after(() => rmSync(root, { recursive: true, force: true }));
const noPython = !pythonHas('numpy, safetensors') && 'python3 with numpy and safetensors is not installed';
const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';

/** q at rank 8 (alpha 16), v at rank 4 (alpha 4 through the patterns); rsLoRA optional. */
async function adapter(name: string, rslora: boolean, extra: Record<string, unknown> = {}): Promise<string> {
  return writePeft(join(root, name), {
    config: { r: 8, lora_alpha: 16, use_rslora: rslora, target_modules: ['q_proj', 'v_proj'], rank_pattern: { v_proj: 4 }, alpha_pattern: { v_proj: 4 }, task_type: 'CAUSAL_LM', ...extra },
    tensors: [
      gen(`base_model.model.${Q}.lora_A.weight`, 'F32', [8, 48], 1, 0.3),
      gen(`base_model.model.${Q}.lora_B.weight`, 'F32', [64, 8], 2, 0.3),
      gen(`base_model.model.${V}.lora_A.weight`, 'F32', [4, 48], 3, 0.3),
      gen(`base_model.model.${V}.lora_B.weight`, 'F32', [40, 4], 4, 0.3),
    ],
  });
}

/** scale·B·A of a written adapter, its scale from the adapter's own config. */
function scaled(dir: string, module: string): Float64Array {
  const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  const p = adapterProduct(dir, module);
  const short = module.split('.').pop()!;
  const alpha = cfg.alpha_pattern[module] ?? cfg.alpha_pattern[short] ?? cfg.lora_alpha;
  const scale = alpha / (cfg.use_rslora ? Math.sqrt(p.rank) : p.rank);
  return p.values.map((x) => x * scale);
}

async function cli(argv: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (x) => (out += x));
  const code = await loraResizeCommand.run(argv, { stdout, stderr: new PassThrough(), signal: new AbortController().signal });
  return { code, out };
}

describe('lora-resize', () => {
  it('svdSmall: U·diag(σ)·Vᵀ rebuilds the matrix, U and V orthonormal, σ sorted', () => {
    const n = 7;
    const c = gen('c', 'F32', [n, n], 21).values;
    const { u, sigma, v } = svdSmall(c, n);
    const us = u.map((x, i) => x * sigma[i % n]);
    const vt = new Float64Array(n * n).map((_, i) => v[(i % n) * n + Math.floor(i / n)]);
    assert.ok(relMax(mul(us, vt, n, n, n), c) < 1e-13);
    const utu = mul(new Float64Array(n * n).map((_, i) => u[(i % n) * n + Math.floor(i / n)]), u, n, n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(utu[i * n + j] - (i === j ? 1 : 0)) < 1e-13);
    for (let i = 1; i < n; i++) assert.ok(sigma[i] <= sigma[i - 1]);
  });

  for (const rslora of [false, true]) {
    const tag = rslora ? 'rsLoRA' : 'plain scale';
    it(`${tag}: to the same rank gives the same product, alpha kept`, async () => {
      const src = await adapter(`same-${rslora}`, rslora);
      const out = join(root, `same-${rslora}-out`);
      await loraResize({ adapter: src, outDir: out, rank: 8 });
      for (const m of [Q, V]) assert.ok(relMax(scaled(out, m), scaled(src, m)) < 1e-6, m);
      const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.lora_alpha, 16);
      assert.equal(cfg.use_rslora, rslora);
      assert.equal(cfg.task_type, 'CAUSAL_LM');
      assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
    });

    it(`${tag}: to a lower rank gives numpy's truncated SVD of the product (Eckart–Young)`, { skip: noPython }, async () => {
      const src = await adapter(`low-${rslora}`, rslora);
      const out = join(root, `low-${rslora}-out`);
      await loraResize({ adapter: src, outDir: out, rank: 3 });
      for (const m of [Q, V]) {
        const want = oracle('product', src, m, '3') as { product: number[] };
        assert.equal(adapterProduct(out, m).rank, 3);
        assert.ok(relMax(scaled(out, m), want.product) < 1e-6, `${m}: ${relMax(scaled(out, m), want.product)}`);
      }
    });
  }

  it('--energy picks the smallest rank holding the share of the product, as numpy’s singular values say', { skip: noPython }, async () => {
    const src = await adapter('energy', false);
    const out = join(root, 'energy-out');
    const { code, out: text } = await cli([src, out, '--energy', '0.8']);
    assert.equal(code, 0);
    for (const m of [Q, V]) {
      const s = (oracle('product', src, m) as { sigma: number[] }).sigma;
      const total = s.reduce((x, y) => x + y * y, 0);
      let want = 0;
      for (let acc = 0; acc < 0.8 * total; want++) acc += s[want] ** 2;
      assert.equal(adapterProduct(out, m).rank, want, m);
      assert.match(text, new RegExp(`${m.replace(/\./g, '\\.')}  r \\d → ${want}`));
    }
  });

  it('refuses DoRA with a clear message, writes nothing; refuses missing arguments', async () => {
    const src = join(root, 'dora');
    await writePeft(src, {
      config: { r: 2, lora_alpha: 2, use_dora: true, target_modules: ['q_proj'] },
      tensors: [
        gen(`base_model.model.${Q}.lora_A.weight`, 'F32', [2, 8], 1),
        gen(`base_model.model.${Q}.lora_B.weight`, 'F32', [8, 2], 2),
        gen(`base_model.model.${Q}.lora_magnitude_vector`, 'F32', [8], 3),
      ],
    });
    const out = join(root, 'dora-out');
    await assert.rejects(loraResize({ adapter: src, outDir: out, rank: 1 }), (e: unknown) => e instanceof FormatError && e.code === 'unsupported' && /DoRA/.test(e.message));
    assert.equal(existsSync(out), false);
    await assert.rejects(cli([src, out]), /--rank R or --energy E/);
    // The output folder is the adapter's own: its files would be replaced.
    const same = await adapter('inplace', false);
    await assert.rejects(loraResize({ adapter: same, outDir: same, rank: 2 }), (e: unknown) => e instanceof FormatError && e.code === 'output_is_input');
  });
});
