/**
 * `ggml_quantize_chunk` for the K-quants (Q2_K … Q6_K), Q5_0, Q5_1, IQ4_NL and IQ4_XS:
 * rows of f32 in, ggml blocks out, byte-identical to libggml with and without an
 * importance matrix. `kquantCpu` wraps it as a quantizer kernel (QuantizeArgs in,
 * blocks plus error sums out, the sums measured with our own dequantizer).
 */
import type { GgmlTypeName } from '../../format/gguf/types';
import { dequantize } from '../dequant/dequant.cpu';
import { bytesPerInput, decodeInto, emptySums, f16Table32, inputViews, scratch, sumsFrom, type QuantizeArgs, type QuantizeResult } from './common';
import { quantizeQ2K, quantizeQ3K, quantizeQ4K, quantizeQ5K, quantizeQ6K } from './kquantRows';
import { ERR_MAX_VALUES, errorSumsWasm, type ErrKernel } from './errorSumsWasm';
import { quantizeIq4Nl, quantizeIq4Xs, quantizeQ5_0, quantizeQ5_1 } from './q5iq4Rows';

export type KQuantType = 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q5_0' | 'Q5_1' | 'IQ4_NL' | 'IQ4_XS';

type RowQuantizer = (x: Float32Array, xo: number, count: number, out: Uint8Array, oo: number, qw: Float32Array | null) => void;

interface KQuantInfo {
  readonly blockSize: number;
  readonly blockBytes: number;
  /** Quantizes one row; `count` is super-blocks for the K-quants and values for the others. */
  readonly row: RowQuantizer;
  readonly countIsBlocks: boolean;
}

export const KQUANT_TYPES: Readonly<Record<KQuantType, KQuantInfo>> = {
  Q2_K: { blockSize: 256, blockBytes: 84, row: quantizeQ2K, countIsBlocks: true },
  Q3_K: { blockSize: 256, blockBytes: 110, row: quantizeQ3K, countIsBlocks: true },
  Q4_K: { blockSize: 256, blockBytes: 144, row: quantizeQ4K, countIsBlocks: true },
  Q5_K: { blockSize: 256, blockBytes: 176, row: quantizeQ5K, countIsBlocks: true },
  Q6_K: { blockSize: 256, blockBytes: 210, row: quantizeQ6K, countIsBlocks: true },
  Q5_0: { blockSize: 32, blockBytes: 22, row: quantizeQ5_0, countIsBlocks: false },
  Q5_1: { blockSize: 32, blockBytes: 24, row: quantizeQ5_1, countIsBlocks: false },
  IQ4_NL: { blockSize: 32, blockBytes: 18, row: quantizeIq4Nl, countIsBlocks: false },
  IQ4_XS: { blockSize: 256, blockBytes: 136, row: quantizeIq4Xs, countIsBlocks: false },
};

/**
 * Quantizes `rows` rows of `perRow` values as `ggml_quantize_chunk(type, x, out, 0, rows,
 * perRow, imatrix)` does. `imatrix` holds one non-negative weight per column (shared by
 * every row); without it ggml's reference rows are used where ggml uses them.
 */
export function quantizeGgmlRows(type: KQuantType, x: Float32Array, rows: number, perRow: number, imatrix?: Float32Array | null, into?: Uint8Array): Uint8Array {
  const t = KQUANT_TYPES[type];
  if (!Number.isInteger(rows) || !Number.isInteger(perRow) || rows < 0 || perRow < 0) throw new RangeError(`${type}: rows and row length must be non-negative integers`);
  if (perRow % t.blockSize !== 0) throw new RangeError(`${type}: row length ${perRow} is not a multiple of ${t.blockSize}`);
  if (x.length < rows * perRow) throw new RangeError(`${type}: ${rows}×${perRow} values needed, ${x.length} given`);
  if (imatrix && imatrix.length !== perRow) throw new RangeError(`${type}: importance matrix has ${imatrix.length} weights, the row ${perRow}`);
  const rowBytes = (perRow / t.blockSize) * t.blockBytes;
  const out = into ?? new Uint8Array(rows * rowBytes);
  if (out.length < rows * rowBytes) throw new RangeError(`${type}: output holds ${out.length} bytes, ${rows * rowBytes} needed`);
  const count = t.countIsBlocks ? perRow / t.blockSize : perRow;
  const qw = imatrix ?? null;
  for (let r = 0; r < rows; r++) t.row(x, r * perRow, count, out, r * rowBytes, qw);
  return out;
}

// Values decoded and dequantized per step of the error sums: bounds the scratch memory.
const STAT_ROWS_VALUES = 1 << 16;

/** The quantizer kernel for one of these types: decodes BF16/F16/F32, quantizes, measures. */
export function kquantCpu(type: KQuantType, a: QuantizeArgs, imatrix?: Float32Array | null): QuantizeResult {
  const t = KQUANT_TYPES[type];
  const width = bytesPerInput(a.dtype);
  if (!Number.isInteger(a.rows) || !Number.isInteger(a.cols) || a.rows < 0 || a.cols < 0) throw new RangeError(`${type}: rows and cols must be non-negative integers`);
  if (a.cols % t.blockSize !== 0) throw new RangeError(`${type}: row length ${a.cols} is not a multiple of ${t.blockSize}`);
  if (a.src.byteLength !== a.rows * a.cols * width) throw new RangeError(`${type}: expected ${a.rows * a.cols * width} bytes of ${a.dtype}, got ${a.src.byteLength}`);
  const n = a.rows * a.cols;
  const { f: x, u: xb } = scratch(n);
  decodeInto(inputViews(a.src, a.dtype), 0, n, x, xb);
  const rowBytes = (a.cols / t.blockSize) * t.blockBytes;
  const outLen = a.rows * rowBytes;
  const data = quantizeGgmlRows(type, x, a.rows, a.cols, imatrix, a.out && a.out.length === outLen ? a.out : undefined);
  if (a.stats === false) return { data, stats: emptySums() };
  return { data, stats: errorSums(type, x, data, a.rows, a.cols, rowBytes) };
}

/** Q6_K blocks → the kernel's Y, in WebAssembly: the group steps f32(d·scale) here, the codes there. */
function dequantQ6K(w: ErrKernel, blocks: Uint8Array): void {
  const nb = blocks.length / 210;
  w.q6.set(blocks);
  const t = f16Table32();
  for (let b = 0, p = 0; b < nb; b++, p += 210) {
    const d = t[blocks[p + 208] | (blocks[p + 209] << 8)];
    for (let g = 0; g < 16; g++) w.q6Steps[b * 16 + g] = Math.fround(d * ((blocks[p + 192 + g] << 24) >> 24));
  }
  w.dq6(nb);
}

function errorSums(type: KQuantType, x: Float32Array, data: Uint8Array, rows: number, cols: number, rowBytes: number) {
  const rowsPerStep = Math.max(1, Math.floor(STAT_ROWS_VALUES / Math.max(1, cols)));
  const w = cols <= ERR_MAX_VALUES ? errorSumsWasm() : null;
  if (w) {
    // The same sums in WebAssembly: the dequantizer writes straight into the kernel's memory.
    const per = Math.floor(ERR_MAX_VALUES / cols);
    w.sums.fill(0);
    for (let r = 0; r < rows; r += per) {
      const k = Math.min(per, rows - r);
      const blocks = data.subarray(r * rowBytes, (r + k) * rowBytes);
      if (type === 'Q6_K') dequantQ6K(w, blocks);
      else dequantize(type as GgmlTypeName, blocks, w.y.subarray(0, k * cols));
      w.x.set(x.subarray(r * cols, (r + k) * cols));
      w.acc(k * cols);
    }
    return sumsFrom(rows * cols, w.sums[0], w.sums[1], w.sums[2], w.sums[3]);
  }
  const y = new Float32Array(rowsPerStep * cols);
  let sumX2 = 0, sumXE = 0, sumE2 = 0, maxErr = 0;
  for (let r = 0; r < rows; r += rowsPerStep) {
    const k = Math.min(rowsPerStep, rows - r);
    dequantize(type as GgmlTypeName, data.subarray(r * rowBytes, (r + k) * rowBytes), y);
    const base = r * cols;
    for (let i = 0; i < k * cols; i++) {
      const xv = x[base + i];
      const e = xv - y[i];
      sumX2 += xv * xv;
      sumXE += xv * e;
      sumE2 += e * e;
      const ae = Math.abs(e);
      if (ae > maxErr) maxErr = ae;
    }
  }
  return sumsFrom(rows * cols, sumX2, sumXE, sumE2, maxErr);
}
