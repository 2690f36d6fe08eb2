import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { q4_K } from '../../src/compute/dequant/kquants.cpu';
import { q4KSimd } from '../../src/compute/dequant/q4kSimd';
import { GGML_TYPES, ggmlTypeByName, type GgmlTypeName } from '../../src/format/gguf/types';
import { loadGgml, type Ggml } from './ggmlOracle';

/**
 * The CPU dequantizers against libggml's own decoders, bit for bit: random block bytes (NaN and
 * inf scales included), random bytes with finite scales (so every grid code shows), extreme
 * scales, and real-looking data quantized by ggml_quantize_chunk. Two NaNs count as equal
 * whatever their payloads, the only latitude taken.
 */

const loaded = loadGgml();
const CI = process.env.CI === 'true';
const skip = typeof loaded === 'string' ? `libggml oracle unavailable: ${loaded}` : false;
if (typeof loaded === 'string') {
  if (CI) test('libggml oracle loads', () => assert.fail(loaded));
  else console.log(`# skipping the ggml oracle tests: ${loaded}`);
}
const ggml = loaded as Ggml;

class Rng {
  constructor(private x: number) {}
  u32(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.x = x >>> 0);
  }
  uniform(): number {
    return (this.u32() + 0.5) / 4294967296;
  }
  gauss(): number {
    return Math.sqrt(-2 * Math.log(this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 255;
    return b;
  }
}

/** Byte offsets of each block's float16 scale fields, to force them finite or extreme. */
const F16_FIELDS: Partial<Record<GgmlTypeName, number[]>> = {
  Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q8_0: [0], Q8_1: [0, 2], Q1_0: [0], Q2_0: [0],
  Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208], TQ1_0: [52], TQ2_0: [64],
  IQ2_XXS: [0], IQ2_XS: [0], IQ2_S: [0], IQ3_XXS: [0], IQ3_S: [0], IQ1_S: [0], IQ4_NL: [0], IQ4_XS: [0],
};

const BLOCK_TYPES = [...GGML_TYPES.values()].filter((t) => t.blockSize > 1).map((t) => t.name);

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

type Decoder = (src: Uint8Array, out: Float32Array) => void;

function assertSame(type: GgmlTypeName, src: Uint8Array, what: string, oracle: (s: Uint8Array, n: number) => Float32Array = (s, n) => ggml.toFloat(type, s, n), decode?: Decoder): void {
  const info = ggmlTypeByName(type);
  const n = (src.length / info.typeSize) * info.blockSize;
  const ours = new Float32Array(n);
  if (decode) decode(src, ours);
  else assert.equal(dequantize(type, src, ours), n);
  const ref = oracle(src, n);
  const a = bitsOf(ours);
  const b = bitsOf(ref);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i] && !(Number.isNaN(ours[i]) && Number.isNaN(ref[i]))) {
      const blk = Math.floor(i / info.blockSize);
      const bytes = Buffer.from(src.subarray(blk * info.typeSize, (blk + 1) * info.typeSize)).toString('hex');
      assert.fail(`${type} ${what}: element ${i} (block ${blk}) is ${ours[i]} (0x${a[i].toString(16)}), ggml gives ${ref[i]} (0x${b[i].toString(16)}); block ${bytes}`);
    }
  }
}

/** Random finite float16 with exponent 1..30 (normal numbers only when `normal`). */
function finiteF16(r: Rng): number {
  const exp = 1 + (r.u32() % 30);
  return ((r.u32() & 0x8000) | (exp << 10) | (r.u32() & 1023)) & 0xffff;
}

function saneBlocks(type: GgmlTypeName, r: Rng, blocks: number): Uint8Array {
  const info = ggmlTypeByName(type);
  const src = r.bytes(blocks * info.typeSize);
  for (let b = 0; b < blocks; b++) {
    const p = b * info.typeSize;
    for (const off of F16_FIELDS[type] ?? []) {
      const h = finiteF16(r);
      src[p + off] = h & 255;
      src[p + off + 1] = h >> 8;
    }
    if (type === 'IQ1_M') src[p + 55] &= 0xbf; // top exponent bit of the spread f16 scale: never inf/NaN
    if (type === 'Q8_K') new DataView(src.buffer).setFloat32(p, (r.uniform() - 0.5) * 2 ** ((r.u32() % 60) - 30), true);
  }
  return src;
}

/** Specials for every f16 scale field: zeros, ±inf, NaN, the smallest subnormal, the largest finite. */
const EXTREME_F16 = [0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3c00];

function extremeBlocks(type: GgmlTypeName, r: Rng): Uint8Array {
  const info = ggmlTypeByName(type);
  const fields = F16_FIELDS[type] ?? [];
  const blocks = Math.max(1, fields.length * EXTREME_F16.length * 4);
  const src = saneBlocks(type, r, blocks);
  let b = 0;
  for (const off of fields) {
    for (const h of EXTREME_F16) {
      for (let k = 0; k < 4; k++, b++) {
        src[b * info.typeSize + off] = h & 255;
        src[b * info.typeSize + off + 1] = h >> 8;
      }
    }
  }
  return src;
}

/** Rows of real-looking weights: Gaussian, heavy-tailed with outliers, constant, zero, tiny, huge. */
function weightRows(r: Rng, rows: number, perRow: number): Float32Array {
  const x = new Float32Array(rows * perRow);
  for (let row = 0; row < rows; row++) {
    const kind = row % 8;
    for (let j = 0; j < perRow; j++) {
      const g = r.gauss();
      const t = g / Math.sqrt((r.gauss() ** 2 + r.gauss() ** 2 + r.gauss() ** 2) / 3); // Student t, 3 d.o.f.
      x[row * perRow + j] = [
        0.02 * g,
        0.02 * t * (r.u32() % 997 === 0 ? 50 : 1),
        0.5,
        0,
        1e-7 * g,
        6e4 * g,
        3e5 * t,
        g * 2 ** ((r.u32() % 40) - 20),
      ][kind];
    }
  }
  return x;
}

/** Types ggml_quantize_chunk can produce. */
const QUANTIZABLE = new Set<GgmlTypeName>([
  'Q1_0', 'Q2_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'MXFP4', 'NVFP4', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K',
  'TQ1_0', 'TQ2_0', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS', 'IQ3_S', 'IQ2_S', 'IQ1_S', 'IQ1_M', 'IQ4_NL', 'IQ4_XS', 'F16', 'BF16',
]);

/** Q8_1 has no to_float in ggml; its d and quants are Q8_0's, so Q8_0's decoder is the oracle. */
function q8_1ViaQ8_0(src: Uint8Array, n: number): Float32Array {
  const blocks = src.length / 36;
  const q80 = new Uint8Array(blocks * 34);
  for (let b = 0; b < blocks; b++) {
    q80.set(src.subarray(b * 36, b * 36 + 2), b * 34);
    q80.set(src.subarray(b * 36 + 4, b * 36 + 36), b * 34 + 2);
  }
  return ggml.toFloat('Q8_0', q80, n);
}

for (const type of BLOCK_TYPES) {
  const oracle = type === 'Q8_1' ? q8_1ViaQ8_0 : undefined;
  test(`${type}: bit-identical to ggml on random, finite-scale and extreme blocks`, { skip }, () => {
    const r = new Rng(0x9e3779b9 ^ ggmlTypeByName(type).id);
    const info = ggmlTypeByName(type);
    assert.equal(ggml.blockSize(info.id), info.blockSize, 'block size');
    assert.equal(ggml.typeSize(info.id), info.typeSize, 'bytes per block');
    assertSame(type, r.bytes(512 * info.typeSize), 'random bytes', oracle);
    // 8192 blocks of 8–32 groups each draw every grid row (≤ 2048 codes) many times over.
    assertSame(type, saneBlocks(type, r, 8192), 'random bytes, finite scales', oracle);
    assertSame(type, extremeBlocks(type, r), 'extreme scales', oracle);
  });
  if (QUANTIZABLE.has(type)) {
    test(`${type}: bit-identical to ggml on weights quantized by ggml_quantize_chunk`, { skip }, () => {
      const r = new Rng(0x51ed ^ ggmlTypeByName(type).id);
      // The IQ quantizers search their grids and take seconds per row; 8 rows still hold every kind.
      const slow = type.startsWith('IQ') && type !== 'IQ4_NL' && type !== 'IQ4_XS';
      // IQ1_S and IQ2_S search the largest grids; one 256-value block per row keeps them to seconds.
      const perRow = type === 'IQ1_S' || type === 'IQ2_S' ? 256 : slow ? 512 : 1024;
      const rows = slow ? 8 : 16;
      const x = weightRows(r, rows, perRow);
      const imatrix = ggml.requiresImatrix(ggmlTypeByName(type).id) || type.startsWith('IQ') ? Float32Array.from({ length: perRow }, () => 0.1 + r.uniform()) : undefined;
      assertSame(type, ggml.quantize(type, x, rows, perRow, imatrix), 'quantized weights');
    });
  }
}

test('Q4_K: the scalar twin and the WebAssembly SIMD path both match ggml', { skip }, () => {
  const r = new Rng(0x4b4b);
  const src = saneBlocks('Q4_K', r, 5000); // not a multiple of the SIMD batch: the last batch is partial
  const scalar: Decoder = (s, o) => q4_K(s, o, s.length / 144);
  const simd: Decoder = (s, o) => assert.ok(q4KSimd(s, o, s.length / 144), 'WebAssembly SIMD is available in Node');
  assertSame('Q4_K', src, 'scalar twin', undefined, scalar);
  assertSame('Q4_K', src, 'SIMD path', undefined, simd);
  assertSame('Q4_K', extremeBlocks('Q4_K', r), 'SIMD path, extreme scales', undefined, simd);
  assertSame('Q4_K', r.bytes(300 * 144), 'SIMD path, random bytes', undefined, simd);
});

test('F16 and BF16: every one of the 65,536 patterns matches ggml', { skip }, () => {
  const all = new Uint8Array(65536 * 2);
  for (let h = 0; h < 65536; h++) {
    all[2 * h] = h & 255;
    all[2 * h + 1] = h >> 8;
  }
  assertSame('F16', all, 'all patterns');
  assertSame('BF16', all, 'all patterns');
});
