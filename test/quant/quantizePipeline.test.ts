import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeLlama } from '../fixtures/llama';
import { preview, quantize } from '../../src/pipelines/quantize';
import { disposeBackends } from '../../src/compute/backend';
import { refF16Value, refFp8, refInt8Channel, refQ4_0, refQ8_0 } from './quantRef';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { gguf: parseGguf } = require('@huggingface/gguf') as typeof import('@huggingface/gguf');

/** A test-local safetensors reader (from the spec): header JSON plus the raw file. */
async function readST(path: string): Promise<{ meta: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> }> {
  const buf = new Uint8Array(await readFile(path));
  const n = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {};
  let meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') meta = v as unknown as Record<string, string>;
    else tensors[k] = { dtype: v.dtype, shape: v.shape, bytes: buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) };
  }
  return { meta, tensors };
}

function bf16Values(bytes: Uint8Array): number[] {
  const u16 = new Uint16Array(bytes.slice().buffer);
  const u32 = Uint32Array.from(u16, (h) => h * 65536);
  return Array.from(new Float32Array(u32.buffer));
}

let dir: string;
let input: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-quant-'));
  input = join(dir, 'in');
  await writeLlama(input, { shards: 2 });
});
after(async () => {
  await disposeBackends();
  await rm(dir, { recursive: true, force: true });
});

async function inputTensors() {
  const files = (await readdir(input)).filter((f) => f.endsWith('.safetensors')).sort();
  const all: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {};
  for (const f of files) Object.assign(all, (await readST(join(input, f))).tensors);
  return all;
}

test('q8_0 to safetensors: ggml blocks as U8, kept tensors untouched, layout in __metadata__, config', async () => {
  const out = join(dir, 'q8');
  const rep = await quantize({ input, output: out, scheme: 'q8_0', format: 'safetensors' }, { backend: 'cpu' });
  const src = await inputTensors();
  const files = (await readdir(out)).sort();
  assert.ok(files.includes('config.json') && files.includes('model.safetensors.index.json'), files.join());
  const got: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {};
  let meta: Record<string, string> = {};
  for (const f of files.filter((f) => f.endsWith('.safetensors'))) {
    const r = await readST(join(out, f));
    Object.assign(got, r.tensors);
    meta = { ...meta, ...r.meta };
  }
  assert.deepEqual(Object.keys(got).sort(), Object.keys(src).sort());
  for (const [name, t] of Object.entries(src)) {
    const r = rep.tensors.find((x) => x.name === name)!;
    if (t.shape.length === 2 && t.shape[1] % 32 === 0) {
      assert.equal(r.action, 'quantized', name);
      assert.equal(got[name].dtype, 'U8');
      assert.deepEqual(got[name].shape, [t.shape[0], (t.shape[1] / 32) * 34]);
      assert.ok(Buffer.compare(got[name].bytes, refQ8_0(bf16Values(t.bytes))) === 0, `${name} bytes`);
      assert.equal(JSON.parse(meta[`quantization.${name}`]).scheme, 'q8_0');
      // The report's error against an f64 recomputation from the written blocks.
      const x = bf16Values(t.bytes);
      const b = got[name].bytes;
      let e2 = 0;
      for (let i = 0; i < x.length; i++) {
        const blk = Math.floor(i / 32);
        const d = refF16Value(b[blk * 34] | (b[blk * 34 + 1] << 8));
        const y = ((b[blk * 34 + 2 + (i % 32)] << 24) >> 24) * d;
        e2 += (x[i] - y) ** 2;
      }
      assert.ok(Math.abs(r.rmse! - Math.sqrt(e2 / x.length)) <= 1e-6 * r.rmse!, `${name} rmse ${r.rmse} vs ${Math.sqrt(e2 / x.length)}`);
      assert.ok(r.cosine! > 0.999 && r.snrDb! > 30, `${name} cos ${r.cosine} snr ${r.snrDb}`);
    } else {
      assert.equal(r.action, 'kept', name);
      assert.ok(r.reason && r.reason.length > 0);
      assert.equal(got[name].dtype, t.dtype);
      assert.ok(Buffer.compare(got[name].bytes, t.bytes) === 0, `${name} kept bytes`);
    }
  }
  assert.match(rep.tensors.find((x) => x.name.endsWith('down_proj.weight'))!.reason!, /172 is not a multiple of 32/);
  assert.match(rep.tensors.find((x) => x.name.endsWith('input_layernorm.weight'))!.reason!, /norm/);
  const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
  assert.equal(cfg.quantization_config.scheme, 'q8_0');
  assert.equal(cfg.hidden_size, 64);
  const bytesAfter = rep.tensors.reduce((s, t) => s + t.bytesAfter, 0);
  assert.equal(rep.totals.bytesAfter, bytesAfter);
  assert.ok(rep.totals.quantizedBitsPerWeight === 8.5, String(rep.totals.quantizedBitsPerWeight));
});

test('int8-channel and fp8-e4m3: compressed-tensors weight + weight_scale [rows, 1]', async () => {
  const src = await inputTensors();
  for (const scheme of ['int8-channel', 'fp8-e4m3'] as const) {
    const out = join(dir, scheme);
    await quantize({ input, output: out, scheme, keep: ['lm_head.weight'] }, { backend: 'cpu' });
    const got: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {};
    for (const f of (await readdir(out)).filter((f) => f.endsWith('.safetensors'))) Object.assign(got, (await readST(join(out, f))).tensors);
    const name = 'model.layers.1.mlp.down_proj.weight';
    const [rows, cols] = src[name].shape;
    const ref = scheme === 'int8-channel' ? refInt8Channel(bf16Values(src[name].bytes), rows, cols) : refFp8(bf16Values(src[name].bytes), rows, cols);
    assert.equal(got[name].dtype, scheme === 'int8-channel' ? 'I8' : 'F8_E4M3');
    assert.ok(Buffer.compare(got[name].bytes, new Uint8Array(ref.q.buffer)) === 0, `${scheme} weight`);
    assert.equal(got[`${name}_scale`].dtype, 'F32');
    assert.deepEqual(got[`${name}_scale`].shape, [rows, 1]);
    assert.deepEqual(Array.from(new Float32Array(got[`${name}_scale`].bytes.slice().buffer)), Array.from(ref.scales));
    assert.equal(got['lm_head.weight'].dtype, 'BF16');
    assert.equal(got['lm_head.weight_scale'], undefined);
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    assert.equal(cfg.quantization_config.quant_method, 'compressed-tensors');
    assert.equal(cfg.quantization_config.format, scheme === 'int8-channel' ? 'naive-quantized' : 'float-quantized');
    assert.equal(cfg.quantization_config.config_groups.group_0.weights.strategy, 'channel');
    assert.deepEqual(cfg.quantization_config.ignore, ['lm_head']);
  }
});

test('GGUF q4_0 with llama.cpp names reads back with @huggingface/gguf', async () => {
  const out = join(dir, 'model-q4_0.gguf');
  const rep = await quantize({ input, output: out, scheme: 'q4_0', ggufNames: 'llama' }, { backend: 'cpu' });
  assert.equal(rep.format, 'gguf');
  assert.ok(rep.missing.some((m) => /tokenizer/.test(m)));
  const parsed = await parseGguf(out, { allowLocalFile: true });
  const md = parsed.metadata as Record<string, unknown>;
  assert.equal(md.version, 3);
  assert.equal(md['general.architecture'], 'llama');
  assert.equal(md['general.file_type'], 2);
  assert.equal(md['general.quantization_version'], 2);
  assert.equal(md['llama.block_count'], 4);
  assert.equal(md['llama.embedding_length'], 64);
  assert.equal(md['llama.feed_forward_length'], 172);
  assert.equal(md['llama.attention.head_count'], 4);
  assert.equal(md['llama.attention.head_count_kv'], 2);
  assert.equal(md['llama.context_length'], 2048);
  assert.ok(Math.abs((md['llama.attention.layer_norm_rms_epsilon'] as number) - 1e-5) < 1e-10);
  const infos = new Map(parsed.tensorInfos.map((t) => [t.name, t]));
  assert.equal(infos.size, 3 + 4 * 9);
  const q = infos.get('blk.0.attn_q.weight')!;
  assert.deepEqual(q.shape.map(Number), [64, 64]);
  assert.equal(q.dtype, 2);
  assert.deepEqual(infos.get('blk.0.ffn_gate.weight')!.shape.map(Number), [64, 172]);
  assert.equal(infos.get('blk.0.ffn_down.weight')!.dtype, 30); // kept BF16: rows of 172
  assert.equal(infos.get('blk.0.attn_norm.weight')!.dtype, 30);
  assert.ok(infos.has('token_embd.weight') && infos.has('output.weight') && infos.has('output_norm.weight'));
  for (const t of parsed.tensorInfos) assert.equal(Number(t.offset) % 32, 0, t.name);
  // Data: ffn_gate as is; attn_k with llama.cpp's rotary row order (per head: rows i·hd/2 + j → 2j + i).
  const file = new Uint8Array(await readFile(out));
  const base = Number(parsed.tensorDataOffset);
  const src = await inputTensors();
  const gate = src['model.layers.0.mlp.gate_proj.weight'];
  const gOff = base + Number(infos.get('blk.0.ffn_gate.weight')!.offset);
  const wantGate = refQ4_0(bf16Values(gate.bytes));
  assert.ok(Buffer.compare(file.subarray(gOff, gOff + wantGate.length), wantGate) === 0, 'ffn_gate blocks');
  const k = src['model.layers.0.self_attn.k_proj.weight'];
  const kv = bf16Values(k.bytes);
  const hd = 16;
  const permuted: number[] = [];
  for (let h = 0; h < 2; h++) {
    for (let r = 0; r < hd; r++) {
      const srcRow = h * hd + (r % 2) * (hd / 2) + Math.floor(r / 2);
      permuted.push(...kv.slice(srcRow * 64, srcRow * 64 + 64));
    }
  }
  const wantK = refQ4_0(permuted);
  const kOff = base + Number(infos.get('blk.0.attn_k.weight')!.offset);
  assert.ok(Buffer.compare(file.subarray(kOff, kOff + wantK.length), wantK) === 0, 'attn_k blocks in llama.cpp row order');
});

test('cancelling leaves nothing behind', async () => {
  const out = join(dir, 'cancelled');
  const ac = new AbortController();
  const p = quantize({ input, output: out, scheme: 'q4_1', format: 'safetensors' }, {
    backend: 'cpu',
    signal: ac.signal,
    progress: (pr) => {
      if (pr.done > 0) ac.abort();
    },
  });
  await assert.rejects(p, (e: Error) => e.name === 'AbortError' || e.name === 'CancelledError');
  const left = (await readdir(dir)).filter((f) => f.startsWith('cancelled') || f.includes('.tmp-'));
  assert.deepEqual(left, []);
  const gg = join(dir, 'x.gguf');
  const ac2 = new AbortController();
  ac2.abort();
  await assert.rejects(quantize({ input, output: gg, scheme: 'q8_0' }, { backend: 'cpu', signal: ac2.signal }));
  assert.deepEqual((await readdir(dir)).filter((f) => f.includes('x.gguf')), []);
});

test('preview: exact sizes, sampled errors ordered by bits, at most 1% of each tensor read', async () => {
  const pv = await preview({ input }, { backend: 'cpu' });
  const by = Object.fromEntries(pv.rows.map((r) => [r.scheme, r]));
  for (const s of ['q8_0', 'q4_0', 'q4_1'] as const) {
    const rep = await quantize({ input, output: join(dir, `pv-${s}.gguf`), scheme: s }, { backend: 'cpu' });
    // GGUF keeps every tensor; the preview's size is the safetensors-equivalent payload: same data bytes.
    assert.equal(by[s].bytesAfter, rep.totals.bytesAfter, s);
    assert.ok(by[s].sampledValues > 0 && by[s].sampledValues <= rep.totals.quantizedParams * 0.01, `${s} sampled ${by[s].sampledValues}`);
    // The estimate is near the real error (a 1% sample of similar data).
    assert.ok(Math.abs(by[s].snrDb! - rep.totals.snrDb!) < 3, `${s} snr estimate ${by[s].snrDb} vs ${rep.totals.snrDb}`);
  }
  // 8 bits beat 4 bits by far (~6 dB per bit); Q4_0 against Q4_1 depends on the data.
  assert.ok(by.q8_0.snrDb! > by.q4_1.snrDb! + 10 && by.q8_0.snrDb! > by.q4_0.snrDb! + 10, JSON.stringify(pv.rows.map((r) => [r.scheme, r.snrDb])));
  assert.ok(by['int8-channel'].bytesAfter < pv.bytesBefore && by.q4_0.bytesAfter < by.q8_0.bytesAfter);
});

test('the WebGPU backend writes the same file as the CPU backend', async (t) => {
  const { getBackend } = await import('../../src/compute/backend');
  try {
    await getBackend('webgpu');
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    t.skip(`no WebGPU adapter: ${(e as Error).message}`);
    return;
  }
  for (const scheme of ['q4_1', 'int8-channel'] as const) {
    const a = join(dir, `gpu-${scheme}.safetensors`);
    const b = join(dir, `cpu-${scheme}.safetensors`);
    const ra = await quantize({ input, output: a, scheme, format: 'safetensors' }, { backend: 'webgpu' });
    await quantize({ input, output: b, scheme, format: 'safetensors' }, { backend: 'cpu' });
    assert.match(ra.backend, /.+/);
    assert.notEqual(ra.backend.startsWith('cpu'), true, ra.backend);
    assert.ok(Buffer.compare(await readFile(a), await readFile(b)) === 0, `${scheme}: files differ`);
  }
});
