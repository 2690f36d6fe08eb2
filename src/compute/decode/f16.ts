// The one F16 → F32 table of the CPU twins (quantizers, matmul, diff).

let table: Float32Array | undefined;

/**
 * F16 bits → F32, one entry per bit pattern (256 KiB, built once per thread).
 * NaN payloads are kept, so the mapping is injective and decoded bits can be
 * compared instead of the source bits.
 */
export function f16Table(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mant << 13);
    } else if (exp === 0) {
      // Subnormal (or zero): exact as a product, since 2^-24 and the mantissa are both representable.
      t[h] = (sign ? -1 : 1) * mant * 2 ** -24;
    } else {
      bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
    }
  }
  table = t;
  return t;
}
