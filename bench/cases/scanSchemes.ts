// Whole-model scans of quantized safetensors (issue: ≥ 1 GB/s of file bytes on 2 cores), as
// scan.q4_k measures the GGUF one. The files are written here in each format's published
// layout from Gaussian weights (the quantize command does not write these schemes).
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { patternTable } from '../../src/compute/decode/patterns';
import { f16FromF64 } from '../../src/format/cast';
import { F16_TO_F32 } from '../../src/compute/dequant/half';
import { writeSafetensors, type TensorSource } from '../../src/format/writer';
import type { BenchCase, BenchContext } from '../case';
import { timedScans, weights } from './scan';

/** Timed runs: the scheme paths decode every value, so fewer than scan.q4_k's. */
const RUNS = 3;
// Pool rows of 4,096 weights: 16.8 M weights quantized once, each tensor a rotation of them.
const ROWS = 4096;
const COLS = 4096;

/** Nearest-value encoder for an 8-bit float dtype, from its decode table (NaN and ±inf left out). */
function encoder(dtype: 'F8_E4M3'): (x: number) => number {
  const table = patternTable(dtype);
  const finite = [...table.keys()].filter((b) => Number.isFinite(table[b])).sort((a, b) => table[a] - table[b]);
  const vals = finite.map((b) => table[b]);
  return (x) => {
    let lo = 0;
    let hi = vals.length - 1;
    if (x <= vals[lo]) return finite[lo];
    if (x >= vals[hi]) return finite[hi];
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (vals[mid] <= x) lo = mid;
      else hi = mid;
    }
    return finite[x - vals[lo] <= vals[hi] - x ? lo : hi];
  };
}

/** DeepSeek-style FP8: `X.weight` F8_E4M3 [4096, 4096] and `X.weight_scale_inv` F32 [32, 32], one scale per 128×128 block (its absmax / 448). */
function fp8Pool(): { data: Uint8Array; scales: Float32Array } {
  const w = weights(ROWS, 11);
  const enc = encoder('F8_E4M3');
  const data = new Uint8Array(ROWS * COLS);
  const scales = new Float32Array((ROWS / 128) * (COLS / 128));
  for (let br = 0; br < ROWS / 128; br++) {
    for (let bc = 0; bc < COLS / 128; bc++) {
      let amax = 0;
      for (let r = br * 128; r < br * 128 + 128; r++) for (let c = bc * 128; c < bc * 128 + 128; c++) amax = Math.max(amax, Math.abs(w[r * COLS + c]));
      const s = amax / 448 || 1;
      scales[br * (COLS / 128) + bc] = s;
      for (let r = br * 128; r < br * 128 + 128; r++) for (let c = bc * 128; c < bc * 128 + 128; c++) data[r * COLS + c] = enc(w[r * COLS + c] / s);
    }
  }
  return { data, scales };
}

/** gpt-oss MXFP4: `X_blocks` U8 [4096, 128, 16] (two E2M1 codes a byte, low nibble first) and `X_scales` U8 [4096, 128] (E8M0, 2^(s − 127)). */
function mxfp4Pool(): { blocks: Uint8Array; scales: Uint8Array } {
  const w = weights(ROWS, 13);
  const e2m1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
  const groups = (ROWS * COLS) / 32;
  const blocks = new Uint8Array(groups * 16);
  const scales = new Uint8Array(groups);
  for (let g = 0; g < groups; g++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(w[g * 32 + i]));
    // OCP MX: the shared exponent is ⌊log2 amax⌋ minus E2M1's largest exponent (2).
    const e = amax > 0 ? Math.floor(Math.log2(amax)) - 2 : -127;
    scales[g] = Math.max(0, Math.min(254, e + 127));
    const s = 2 ** (scales[g] - 127);
    for (let i = 0; i < 32; i++) {
      const x = w[g * 32 + i] / s;
      let best = 0;
      for (let k = 1; k < 8; k++) if (Math.abs(Math.abs(x) - e2m1[k]) < Math.abs(Math.abs(x) - e2m1[best])) best = k;
      const code = best | (x < 0 && best > 0 ? 8 : 0);
      blocks[g * 16 + (i >> 1)] |= i & 1 ? code << 4 : code;
    }
  }
  return { blocks, scales };
}

/** Rotations of a pool, so that tensors differ without quantizing more. */
function rotated(pool: Uint8Array, i: number, unit: number): Uint8Array[] {
  const at = ((i * 997) % (pool.length / unit)) * unit;
  return [pool.subarray(at), pool.subarray(0, at)];
}

async function write(path: string, tensors: TensorSource[], log: (m: string) => void): Promise<void> {
  const t0 = performance.now();
  await writeSafetensors(`${path}.part`, tensors, { order: 'source' });
  await rename(`${path}.part`, path);
  log(`wrote ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// Tensors per file: 60 × 16.8 MB (FP8), 120 × 8.9 MB (MXFP4) and 115 × 8.7 MB (GPTQ), about 1.0 GB each.
const FP8_TENSORS = 60;
const MXFP4_TENSORS = 120;
const GPTQ_TENSORS = 115;
// GPTQ's usual group: 128 input rows share a scale and a zero point per output.
const GPTQ_GROUP = 128;

/**
 * GPTQ int4 as AutoGPTQ writes it (original format: qzeros hold zero − 1), the weight [out, in] =
 * [ROWS, COLS] stored transposed: `qweight` I32 [in/8, out] (input row 8k + j in bits 4j),
 * `qzeros` I32 [groups, out/8], `scales` F16 [groups, out], `g_idx` I32 [in]; asymmetric
 * min-max rounding per group of 128 inputs and output.
 */
function gptqPool(): { qweight: Uint8Array; qzeros: Uint8Array; scales: Uint8Array; gIdx: Uint8Array } {
  const w = weights(ROWS, 17);
  const groups = COLS / GPTQ_GROUP;
  const qweight = new Int32Array((COLS / 8) * ROWS);
  const qzeros = new Int32Array(groups * (ROWS / 8));
  const scales = new Uint16Array(groups * ROWS);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < ROWS; o++) {
      let lo = 0;
      let hi = 0;
      for (let i = g * GPTQ_GROUP; i < (g + 1) * GPTQ_GROUP; i++) {
        lo = Math.min(lo, w[o * COLS + i]);
        hi = Math.max(hi, w[o * COLS + i]);
      }
      const h = f16FromF64((hi - lo) / 15 || 1);
      scales[g * ROWS + o] = h;
      const s = F16_TO_F32[h];
      const z = Math.min(15, Math.max(0, Math.round(-lo / s)));
      qzeros[g * (ROWS / 8) + (o >> 3)] |= ((z - 1) & 15) << ((o & 7) * 4);
      for (let i = g * GPTQ_GROUP; i < (g + 1) * GPTQ_GROUP; i++) {
        const q = Math.min(15, Math.max(0, Math.round(w[o * COLS + i] / s) + z));
        qweight[(i >> 3) * ROWS + o] |= q << ((i & 7) * 4);
      }
    }
  }
  const gIdx = Int32Array.from({ length: COLS }, (_, i) => Math.floor(i / GPTQ_GROUP));
  const bytes = (a: Int32Array | Uint16Array) => new Uint8Array(a.buffer);
  return { qweight: bytes(qweight), qzeros: bytes(qzeros), scales: bytes(scales), gIdx: bytes(gIdx) };
}

async function fp8File(path: string, log: (m: string) => void): Promise<void> {
  const { data, scales } = fp8Pool();
  const tensors = Array.from({ length: FP8_TENSORS }, (_, i): TensorSource[] => [
    { name: `model.layers.${i}.mlp.up_proj.weight`, dtype: 'F8_E4M3', shape: [ROWS, COLS], data: rotated(data, i, 128 * COLS) },
    { name: `model.layers.${i}.mlp.up_proj.weight_scale_inv`, dtype: 'F32', shape: [ROWS / 128, COLS / 128], data: rotated(new Uint8Array(scales.buffer), i, (COLS / 128) * 4) },
  ]).flat();
  await write(path, tensors, log);
}

async function mxfp4File(path: string, log: (m: string) => void): Promise<void> {
  const { blocks, scales } = mxfp4Pool();
  const tensors = Array.from({ length: MXFP4_TENSORS }, (_, i): TensorSource[] => [
    { name: `model.layers.${i}.mlp.down_proj_blocks`, dtype: 'U8', shape: [ROWS, COLS / 32, 16], data: rotated(blocks, i, (COLS / 32) * 16) },
    { name: `model.layers.${i}.mlp.down_proj_scales`, dtype: 'U8', shape: [ROWS, COLS / 32], data: rotated(scales, i, COLS / 32) },
  ]).flat();
  await write(path, tensors, log);
}

async function gptqFile(path: string, log: (m: string) => void): Promise<void> {
  const { qweight, qzeros, scales, gIdx } = gptqPool();
  const groups = COLS / GPTQ_GROUP;
  // Each tensor rotated by whole groups: its qweight by 16 packed rows, its zeros and scales by one row.
  const tensors = Array.from({ length: GPTQ_TENSORS }, (_, i): TensorSource[] => {
    const g = (i * 7) % groups;
    const stem = `model.layers.${i}.mlp.gate_proj`;
    return [
      { name: `${stem}.qweight`, dtype: 'I32', shape: [COLS / 8, ROWS], data: rotated(qweight, g, (GPTQ_GROUP / 8) * ROWS * 4) },
      { name: `${stem}.qzeros`, dtype: 'I32', shape: [groups, ROWS / 8], data: rotated(qzeros, g, (ROWS / 8) * 4) },
      { name: `${stem}.scales`, dtype: 'F16', shape: [groups, ROWS], data: rotated(scales, g, ROWS * 2) },
      { name: `${stem}.g_idx`, dtype: 'I32', shape: [COLS], data: [gIdx] },
    ];
  }).flat();
  await write(path, tensors, log);
}

function schemeCase(name: string, file: string, make: (path: string, log: (m: string) => void) => Promise<void>, what: string): BenchCase {
  return {
    name,
    description: `whole-model stats (no histograms, no top-k, as the CLI's table) of a ~1 GB ${what}, CPU backend, page cache warm; best and median of ${RUNS}; target ≥ 1 GB/s`,
    async run(ctx: BenchContext) {
      const path = join(ctx.workDir, file);
      if (!existsSync(path)) await make(path, ctx.log);
      return timedScans(ctx, path, RUNS);
    },
  };
}

export const scanSchemeCases: BenchCase[] = [
  schemeCase('scan.fp8-block', 'scan-fp8-block-1g.safetensors', fp8File, 'FP8 (E4M3, 128×128 block scales) safetensors'),
  schemeCase('scan.mxfp4', 'scan-mxfp4-1g.safetensors', mxfp4File, 'MXFP4 (gpt-oss layout) safetensors'),
  schemeCase('scan.gptq', 'scan-gptq-1g.safetensors', gptqFile, 'GPTQ int4 (group 128, F16 scales) safetensors'),
];
