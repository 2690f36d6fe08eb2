// The Llama-like fixture, read back with the independent `safetensors` npm reader
// (after dropping `__metadata__`, which that reader cannot parse) and BF16 decoded
// here by its definition (the top 16 bits of an F32).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { llamaLayout, outlierChannels, resolveSpec, writeFineTuned, writeLlama, writePeftAdapter, numelOf } from '../fixtures/llama';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SafeTensor } = require('safetensors') as { SafeTensor: new (b: Uint8Array) => { metadata: Map<string, { dtype: string; shape: number[] }>; getTensor(n: string): Uint8Array } };

/** Every tensor of a folder (single file or shards), via the npm reader. */
function readAll(dir: string): Map<string, { dtype: string; shape: number[]; data: Uint8Array }> {
  const out = new Map<string, { dtype: string; shape: number[]; data: Uint8Array }>();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.safetensors'))) {
    const raw = readFileSync(join(dir, f));
    const n = Number(raw.readBigUInt64LE(0));
    const h = JSON.parse(raw.subarray(8, 8 + n).toString());
    delete h.__metadata__;
    // Re-frame the file without metadata so that the npm reader accepts it.
    const json = Buffer.from(JSON.stringify(h).padEnd(Math.ceil(JSON.stringify(h).length / 8) * 8, ' '));
    const buf = new Uint8Array(8 + json.length + raw.length - 8 - n);
    new DataView(buf.buffer).setBigUint64(0, BigInt(json.length), true);
    buf.set(json, 8);
    buf.set(raw.subarray(8 + n), 8 + json.length);
    const st = new SafeTensor(buf);
    for (const [name, m] of st.metadata) {
      assert.equal(out.has(name), false, `${name} appears once`);
      out.set(name, { dtype: m.dtype, shape: m.shape, data: new Uint8Array(st.getTensor(name)) });
    }
  }
  return out;
}

function bf16Values(b: Uint8Array): Float64Array {
  const out = new Float64Array(b.length / 2);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const f = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < out.length; i++) {
    f.setUint32(0, dv.getUint16(2 * i, true) << 16);
    out[i] = f.getFloat32(0);
  }
  return out;
}

function std(v: Float64Array): number {
  let s = 0;
  let s2 = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
  }
  const m = s / v.length;
  return Math.sqrt(s2 / v.length - m * m);
}

let dir = '';
const spec = resolveSpec({ hidden: 128, intermediate: 344, layers: 4, vocab: 512, heads: 4, kvHeads: 2, seed: 9 });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-llama-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('HF Llama names, shapes and config; sharded with an index; deterministic for a seed', async () => {
  await writeLlama(join(dir, 'a'), { ...spec, shards: 2 });
  await writeLlama(join(dir, 'b'), spec);
  const files = readdirSync(join(dir, 'a')).sort();
  assert.deepEqual(files, ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
  const cfg = JSON.parse(readFileSync(join(dir, 'a', 'config.json'), 'utf8'));
  assert.equal(cfg.hidden_size, 128);
  assert.equal(cfg.num_key_value_heads, 2);
  assert.equal(cfg.torch_dtype, 'bfloat16');
  const a = readAll(join(dir, 'a'));
  const b = readAll(join(dir, 'b'));
  const kv = (128 / 4) * 2;
  assert.deepEqual(a.get('model.layers.3.self_attn.k_proj.weight')!.shape, [kv, 128]);
  assert.deepEqual(a.get('model.layers.0.mlp.down_proj.weight')!.shape, [128, 344]);
  assert.deepEqual(a.get('lm_head.weight')!.shape, [512, 128]);
  assert.equal(a.size, 4 * 9 + 3);
  const index = JSON.parse(readFileSync(join(dir, 'a', 'model.safetensors.index.json'), 'utf8'));
  assert.equal(Object.keys(index.weight_map).length, a.size);
  assert.equal(index.metadata.total_size, llamaLayout(spec).reduce((s, t) => s + numelOf(t.shape) * 2, 0));
  for (const [k, t] of a) assert.deepEqual(t.data, b.get(k)!.data, `${k} is the same for the same seed, sharded or not`);
  await writeLlama(join(dir, 'c'), { ...spec, seed: 10 });
  assert.notDeepEqual(readAll(join(dir, 'c')).get('lm_head.weight')!.data, a.get('lm_head.weight')!.data);
});

test('weights follow N(0, 0.02) with heavy-tailed outlier channels; norms sit near 1', () => {
  const a = readAll(join(dir, 'a'));
  const w = a.get('model.layers.1.mlp.up_proj.weight')!;
  const v = bf16Values(w.data);
  const [rows, cols] = w.shape;
  const outl = new Set(outlierChannels(spec));
  assert.ok(outl.size >= 1);
  const normal: number[] = [];
  let outMax = 0;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const x = v[r * cols + c];
      if (outl.has(c)) outMax = Math.max(outMax, Math.abs(x));
      else normal.push(x);
    }
  const s = std(Float64Array.from(normal));
  assert.ok(Math.abs(s - 0.02) < 0.002, `std ${s}`);
  assert.ok(Math.max(...normal.map(Math.abs)) < 0.02 * 6, 'no outliers outside the outlier channels');
  assert.ok(outMax > 0.02 * 10, `outlier channel reaches ${outMax}`);
  const n = bf16Values(a.get('model.layers.0.input_layernorm.weight')!.data);
  assert.ok(Math.abs(n.reduce((x, y) => x + y, 0) / n.length - 1) < 0.01);
});

test('fine-tuned copy: only the upper half of the layers change, by a small delta; dense and low-rank', async () => {
  const base = readAll(join(dir, 'a'));
  for (const rank of [undefined, 4]) {
    const out = join(dir, `ft-${rank ?? 'dense'}`);
    const r = await writeFineTuned(join(dir, 'a'), out, { layersChanged: 'half', rank });
    assert.deepEqual(r.layers, [2, 3]);
    assert.equal(r.changed.length, 2 * 7);
    assert.ok(readdirSync(out).includes('model-00002-of-00002.safetensors'), 'same sharding as the base');
    const ft = readAll(out);
    assert.equal(ft.size, base.size);
    for (const [k, t] of base) {
      const u = ft.get(k)!;
      assert.deepEqual(u.shape, t.shape);
      if (!r.changed.includes(k)) {
        assert.deepEqual(u.data, t.data, `${k} unchanged`);
        continue;
      }
      const b0 = bf16Values(t.data);
      const d = bf16Values(u.data).map((x, i) => x - b0[i]);
      const sd = std(d);
      assert.ok(sd > 0.001 && sd < 0.004, `${k} delta std ${sd}`);
    }
  }
});

test('PEFT adapter: config and base_model.model.<module>.lora_A/B.weight with [r, in] and [out, r]', async () => {
  const out = join(dir, 'adapter');
  const r = await writePeftAdapter(out, { r: 16, alpha: 32, targets: ['q_proj', 'v_proj'], base: join(dir, 'a') });
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA');
  assert.equal(cfg.r, 16);
  assert.equal(cfg.lora_alpha, 32);
  assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
  const t = readAll(out);
  assert.equal(t.size, 4 * 2 * 2);
  assert.equal(r.modules.length, 8);
  const kv = (128 / 4) * 2;
  assert.deepEqual(t.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!.shape, [16, 128]);
  assert.deepEqual(t.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!.shape, [128, 16]);
  assert.deepEqual(t.get('base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight')!.shape, [kv, 16]);
  assert.equal(t.get('base_model.model.model.layers.3.self_attn.v_proj.lora_A.weight')!.dtype, 'F32');
  const B = new Float32Array(t.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!.data.slice().buffer);
  assert.ok(B.some((x) => x !== 0), 'B is trained (non-zero)');
});
