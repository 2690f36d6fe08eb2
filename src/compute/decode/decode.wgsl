// Decodes packed elements of a small float dtype to f32 bit patterns.
// Input: the raw bytes as little-endian u32 words; element i is bits
// [i*BITS, i*BITS + BITS) of that stream (sub-byte dtypes pack LSB-first).
// Output: u32 bit patterns of the f32 values, so that NaN payloads and f32
// subnormals (F8_E8M0's 2^-127) pass through exactly.

override WG: u32 = 256u;
override BITS: u32 = 16u;
override EXP_BITS: u32 = 8u;
override MAN_BITS: u32 = 7u;
override BIAS: i32 = 127;
// 0 = IEEE (Inf/NaN at the top exponent), 1 = FN (only all-ones is NaN), 2 = FNUZ
// (only -0's pattern is NaN), 3 = finite only, 4 = bfloat16, 5 = E8M0 (power of two).
override SPECIAL: u32 = 4u;

struct Params { count: u32, first: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const NAN_BITS: u32 = 0x7fc00000u;

// `pattern(i)` is patterns.wgsl, appended by decode.gpu.ts.

fn decode(p: u32) -> u32 {
  if (SPECIAL == 4u) { return p << 16u; }
  if (SPECIAL == 5u) {
    if (p == 0xffu) { return NAN_BITS; }
    if (p == 0u) { return 0x00400000u; }
    return p << 23u;
  }
  let sign = (p >> (EXP_BITS + MAN_BITS)) & 1u;
  let e = (p >> MAN_BITS) & ((1u << EXP_BITS) - 1u);
  let m = p & ((1u << MAN_BITS) - 1u);
  let top = (1u << EXP_BITS) - 1u;
  if (SPECIAL == 2u && p == (1u << (EXP_BITS + MAN_BITS))) { return NAN_BITS; }
  if (SPECIAL == 0u && e == top) {
    if (m == 0u) { return (sign << 31u) | 0x7f800000u; }
    return NAN_BITS;
  }
  if (SPECIAL == 1u && e == top && m == (1u << MAN_BITS) - 1u) { return NAN_BITS; }
  if (e == 0u) {
    // Subnormal: m · 2^(1 - BIAS - MAN_BITS); every such value is a normal f32 and the product is exact.
    // max() keeps the override expression representable for the formats that never take this branch.
    let scale = bitcast<f32>(u32(max(1, 127 + 1 - BIAS - i32(MAN_BITS))) << 23u);
    return (sign << 31u) | bitcast<u32>(f32(m) * scale);
  }
  return (sign << 31u) | (u32(i32(e) - BIAS + 127) << 23u) | (m << (23u - MAN_BITS));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.count) { return; }
  dst[i] = decode(pattern(params.first + i));
}
