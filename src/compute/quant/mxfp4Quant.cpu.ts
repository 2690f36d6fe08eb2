import { checkArgs, decodeInto, inputViews, scratch, type QuantizeArgs, type QuantizeResult } from './common';
import { ErrorAcc } from './scalarDrivers';

/** Values per MXFP4 block: one E8M0 scale per 32 E2M1 values (OCP Microscaling v1.0). */
export const MX_BLOCK = 32;
// E2M1's largest exponent (6 = 1.5 × 2^2): the shared exponent is the block's minus this.
const E2M1_EMAX = 2;
// E8M0's exponent range: 2^-127 (byte 0) to 2^127 (byte 254); 255 is NaN.
const SCALE_EMAX = 127;

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** |v| (already divided by the block's scale) → E2M1 magnitude code, round to nearest even, saturating at 6. */
function e2m1Code(a: number): number {
  if (a <= 0.25) return 0;
  if (a < 0.75) return 1;
  if (a <= 1.25) return 2;
  if (a < 1.75) return 3;
  if (a <= 2.5) return 4;
  if (a < 3.5) return 5;
  if (a <= 5) return 6;
  return 7;
}

/** floor(log2(x)) for a finite x > 0, exactly (Math.log2 can round across an integer). */
function floorLog2(x: number): number {
  let e = Math.floor(Math.log2(x));
  if (2 ** e > x) e--;
  else if (2 ** (e + 1) <= x) e++;
  return e;
}

/**
 * MXFP4 as the OCP Microscaling spec defines it, in gpt-oss's layout: per 32 values of a row,
 * shared exponent `s = floor(log2(absMax)) − 2` clamped to [−127, 127] (a block of zeros takes
 * the least, as the spec's reference code does: byte 0), stored as the E8M0 byte s + 127; each
 * value x / 2^s rounded to E2M1 to nearest even, saturating at ±6. Element 2j of a block goes
 * in the low nibble of its byte j, 2j + 1 in the high one. `data` is [rows, cols/32, 16]
 * bytes (`_blocks`), `scaleBytes` [rows, cols/32] (`_scales`).
 */
export function mxfp4QuantCpu(a: QuantizeArgs): QuantizeResult {
  checkArgs('mxfp4', a, MX_BLOCK);
  const n = a.rows * a.cols;
  const data = a.out && a.out.length === n / 2 ? a.out : new Uint8Array(n / 2);
  const scaleBytes = new Uint8Array(n / MX_BLOCK);
  const v = inputViews(a.src, a.dtype);
  const { f: x, u: xb } = scratch(MX_BLOCK);
  const acc = new ErrorAcc(a.stats !== false);
  for (let b = 0; b < n / MX_BLOCK; b++) {
    decodeInto(v, b * MX_BLOCK, MX_BLOCK, x, xb);
    let amax = 0;
    for (let i = 0; i < MX_BLOCK; i++) {
      const ax = Math.abs(x[i]);
      if (ax > amax) amax = ax;
    }
    const shared = Math.max(-SCALE_EMAX, Math.min(SCALE_EMAX, (amax > 0 ? floorLog2(amax) : -126) - E2M1_EMAX));
    scaleBytes[b] = shared + SCALE_EMAX;
    // Dividing by a power of two is exact in float64, so each value is rounded once, to E2M1.
    const inv = 2 ** -shared;
    const scale = 2 ** shared;
    for (let j = 0; j < MX_BLOCK / 2; j++) {
      let byte = 0;
      for (let h = 0; h < 2; h++) {
        const xi = x[2 * j + h];
        const m = e2m1Code(Math.abs(xi) * inv);
        const code = (xi < 0 || Object.is(xi, -0) ? 8 : 0) | m;
        byte |= code << (4 * h);
        if (acc.enabled) acc.add(xi, (code & 8 ? -1 : 1) * E2M1[m] * scale);
      }
      data[b * (MX_BLOCK / 2) + j] = byte;
    }
  }
  return { data, scaleBytes, stats: acc.sums(n) };
}
