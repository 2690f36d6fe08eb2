// quantize --scheme fp8-block / mxfp4 end to end through the CLI, against independent oracles
// (block_schemes_oracle.py): the FP8 codes and weight_scale_inv equal Transformers' FineGrainedFP8
// quantizer's, the MXFP4 blocks and scales the OCP Microscaling definition's; convert --dtype f32
// of our output equals Transformers' dequantizers bit for bit, and Transformers' from_pretrained
// (FineGrainedFP8Config(dequantize=True), on the CPU) loads it to the same values. diff of the
// BF16 original against the quantized model reports relL2, SNR and cosine as numpy computes them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { torchAvailable, transformersAvailable } from './qstFixtures';

const CLI = join(__dirname, 'cli.js');
const ORACLE = join(__dirname, '..', 'test', 'quantized', 'block_schemes_oracle.py');
const skip = !torchAvailable() ? 'python3 with torch is not installed' : !transformersAvailable() ? 'python3 with transformers and accelerate is not installed' : false;

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function cli(...args: string[]) {
  return run(process.execPath, [CLI, ...args]);
}

function oracle(...args: string[]): string {
  const r = run('python3', [ORACLE, ...args]);
  assert.equal(r.status, 0, `block_schemes_oracle.py ${args[0]}: ${r.stderr}`);
  return r.stdout;
}

function oracleReport(...args: string[]): Record<string, unknown> {
  return JSON.parse(oracle(...args).trim().split('\n').at(-1)!) as Record<string, unknown>;
}

interface Cost {
  relL2: number;
  snrDb: number;
  cosine: number;
}

let dir = '';
before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tw-blockschemes-'));
  oracle('llama', join(dir, 'llama'));
  oracle('ragged', join(dir, 'ragged'));
  oracle('gptoss', join(dir, 'gptoss'));
});

/** Quantizes `model` with `scheme`, converts the result back to F32, and asks the oracle. */
function roundTrip(model: string, scheme: 'fp8-block' | 'mxfp4') {
  const src = join(dir, model);
  const q = join(dir, `${model}.${scheme}`);
  const back = join(dir, `${model}.${scheme}.f32`);
  const r1 = cli('quantize', src, q, '--scheme', scheme);
  assert.equal(r1.status, 0, r1.stderr);
  const r2 = cli('convert', q, back, '--dtype', 'f32');
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /quantization_config removed/);
  return { src, q, back, report: oracleReport(scheme === 'fp8-block' ? 'fp8' : 'mxfp4', src, q, back) };
}

function assertCosts(src: string, q: string, want: Record<string, Cost | null>, bounds: { relL2: [number, number]; snrDb: [number, number] }) {
  const r = cli('diff', src, q, '--json');
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as { tensors: (Cost & { name: string; dtypeB?: string; identical: boolean })[] };
  let seen = 0;
  for (const [name, c] of Object.entries(want)) {
    if (c === null) continue; // an all-zero weight: relL2 undefined on both sides
    const row = rep.tensors.find((t) => t.name === name);
    assert.ok(row, `${name} paired in the diff`);
    assert.ok(Math.abs(row.relL2 - c.relL2) <= 1e-6 * c.relL2, `${name}: relL2 ${row.relL2}, numpy ${c.relL2}`);
    assert.ok(Math.abs(row.snrDb - c.snrDb) <= 1e-5, `${name}: SNR ${row.snrDb}, numpy ${c.snrDb}`);
    assert.ok(Math.abs(row.cosine - c.cosine) <= 1e-9, `${name}: cosine ${row.cosine}, numpy ${c.cosine}`);
    assert.ok(row.relL2 > bounds.relL2[0] && row.relL2 < bounds.relL2[1], `${name}: relL2 ${row.relL2}`);
    assert.ok(row.snrDb > bounds.snrDb[0] && row.snrDb < bounds.snrDb[1], `${name}: SNR ${row.snrDb}`);
    seen++;
  }
  assert.ok(seen > 0);
}

test('fp8-block: codes and scales are Transformers\' quantizer\'s; dequantized and loaded by Transformers to the values convert writes', { skip }, () => {
  const { src, q, report } = roundTrip('llama', 'fp8-block');
  assert.equal(report.quantized, 14); // 2 layers × 7 linear weights; embeddings, norms and lm_head kept
  assert.equal(report.codeMismatch, 0);
  assert.equal(report.scaleMismatch, 0);
  assert.equal(report.dequantMismatch, 0);
  const loader = report.loader as { compared: number; mismatch: number };
  assert.ok(loader.compared >= 14, JSON.stringify(loader));
  assert.equal(loader.mismatch, 0);
  const cfg = JSON.parse(readFileSync(join(q, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> & { modules_to_not_convert: string[] } };
  const { modules_to_not_convert: kept, ...rest } = cfg.quantization_config;
  assert.deepEqual(rest, { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] });
  assert.deepEqual([...kept].sort(), ['lm_head', 'model.embed_tokens']);
  // E4M3 keeps 3 mantissa bits: relL2 about 2^-4 / √3 ≈ 0.026, SNR about 31.5 dB.
  assertCosts(src, q, report.tensors as Record<string, Cost | null>, { relL2: [0.015, 0.04], snrDb: [28, 37] });
});

test('fp8-block on sides that are not multiples of 128: ⌈rows/128⌉ × ⌈cols/128⌉ scales, the reference\'s codes, dequantized bit for bit', { skip }, () => {
  const { src, q, report } = roundTrip('ragged', 'fp8-block');
  assert.equal(report.quantized, 3);
  assert.equal(report.codeMismatch, 0);
  assert.equal(report.scaleMismatch, 0);
  assert.equal(report.dequantMismatch, 0);
  const ins = cli('inspect', q, '--json');
  assert.equal(ins.status, 0, ins.stderr);
  const tensors = (JSON.parse(ins.stdout) as { tensors: { name: string; scheme?: string; shape: number[]; parts?: { role: string; shape?: number[] }[] }[] }).tensors;
  const a = tensors.find((t) => t.name === 'a.weight');
  assert.equal(a?.scheme, 'fp8-block');
  assert.deepEqual(a?.shape, [200, 320]);
  const header = readFileSync(join(q, 'model.safetensors'));
  const h = JSON.parse(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  assert.deepEqual(h['a.weight_scale_inv'], { ...h['a.weight_scale_inv'], dtype: 'F32', shape: [2, 3] });
  assert.deepEqual(h['b.weight_scale_inv'], { ...h['b.weight_scale_inv'], dtype: 'F32', shape: [2, 1] });
  assert.equal(h['a.weight'].dtype, 'F8_E4M3');
  assertCosts(src, q, report.tensors as Record<string, Cost | null>, { relL2: [0.015, 0.04], snrDb: [28, 37] });
});

test('mxfp4: _blocks and _scales are the OCP definition\'s, dequantized bit for bit as Transformers\' gpt-oss code does', { skip }, () => {
  for (const model of ['llama', 'ragged']) {
    const { src, q, report } = roundTrip(model, 'mxfp4');
    assert.ok((report.quantized as number) >= 3);
    assert.equal(report.blockMismatch, 0);
    assert.equal(report.scaleMismatch, 0);
    assert.equal(report.dequantMismatch, 0);
    const cfg = JSON.parse(readFileSync(join(q, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string } };
    assert.equal(cfg.quantization_config.quant_method, 'mxfp4');
    // E2M1 with a power-of-two scale per 32: relL2 about 0.1 on Gaussian weights, SNR about 19 dB.
    assertCosts(src, q, report.tensors as Record<string, Cost | null>, { relL2: [0.05, 0.2], snrDb: [13, 26] });
  }
});

test('mxfp4 on a gpt-oss model: only the experts, stored transposed as gpt-oss does, load in Transformers to the values convert writes', { skip }, () => {
  const { src, q, report } = roundTrip('gptoss', 'mxfp4');
  assert.equal(report.quantized, 2); // gate_up_proj and down_proj of the one layer
  assert.equal(report.blockMismatch, 0);
  assert.equal(report.scaleMismatch, 0);
  assert.equal(report.dequantMismatch, 0);
  const loader = report.loader as { compared: number; mismatch: number };
  assert.ok(loader.compared >= 2, JSON.stringify(loader));
  assert.equal(loader.mismatch, 0);
  const b = readFileSync(join(q, 'model.safetensors'));
  const h = JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  // gate_up_proj [experts 4, in 64, out 192] → blocks [4, 192, 2, 16], scales [4, 192, 2].
  assert.deepEqual(h['model.layers.0.mlp.experts.gate_up_proj_blocks'].shape, [4, 192, 2, 16]);
  assert.deepEqual(h['model.layers.0.mlp.experts.gate_up_proj_scales'].shape, [4, 192, 2]);
  assert.equal(h['model.layers.0.self_attn.q_proj.weight'].dtype, 'BF16');
  const cfg = JSON.parse(readFileSync(join(q, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string; modules_to_not_convert: string[] } };
  assert.equal(cfg.quantization_config.quant_method, 'mxfp4');
  assert.ok(cfg.quantization_config.modules_to_not_convert.includes('model.layers.0.self_attn.q_proj'));
  assertCosts(src, q, report.tensors as Record<string, Cost | null>, { relL2: [0.05, 0.2], snrDb: [13, 26] });
});

test('convert of a quantized model to bf16 writes plain BF16 tensors under the weights\' names, and a model without config.json gets none', { skip }, () => {
  const q = join(dir, 'llama.fp8-block');
  if (!existsSync(q)) assert.equal(cli('quantize', join(dir, 'llama'), q, '--scheme', 'fp8-block').status, 0);
  const out = join(dir, 'llama.bf16.safetensors');
  const r = cli('convert', q, out, '--dtype', 'bf16');
  assert.equal(r.status, 0, r.stderr);
  const b = readFileSync(out);
  const h = JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  assert.ok(names.every((k) => h[k].dtype === 'BF16'), JSON.stringify(h));
  assert.ok(!names.some((k) => k.endsWith('_scale_inv')));
  assert.deepEqual(h['model.layers.0.self_attn.q_proj.weight'].shape, [256, 256]);
  // Beside a single file in a folder that has no config.json, the config is written there.
  assert.match(r.stdout, /config\.json \(quantization_config removed\)/);
  const keep = cli('convert', q, join(dir, 'kept.safetensors'), '--dtype', 'keep');
  assert.equal(keep.status, 2);
  assert.match(keep.stderr, /^error\[unsupported\]: .*tensor '.*': fp8-block cannot be kept/m);
  assert.equal(existsSync(join(dir, 'kept.safetensors')), false);
});
