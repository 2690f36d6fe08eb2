// ggml blocks → f32, one invocation per block, bit-identical to dequant.cpu.ts. In these types
// every product is exact in f32 (an f16 scale has at most 11 significant bits, a sub-scale at
// most 7, a quant at most 5: 23 bits), so a fused multiply-add cannot change a bit; the one
// rounding step (the K-quants' `d1 * q - m1`) is a difference of two multiples of 2^-24, never
// subnormal, which WGSL rounds correctly. Blocks whose f16 scale is inf or NaN (WGSL need not
// keep IEEE specials) are flagged for the host to redo with the CPU twin.

// The ggml type id: 8 = Q8_0, 2 = Q4_0, 10 = Q2_K, 11 = Q3_K, 12 = Q4_K, 13 = Q5_K, 14 = Q6_K.
override TYPE: u32 = 8u;
override WG: u32 = 64u;

struct Params { blocks: u32, _a: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
// One word per block: 1 when the host must redo it.
@group(0) @binding(2) var<storage, read_write> flags: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

fn byte(i: u32) -> u32 {
  return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn half16(i: u32) -> u32 {
  return byte(i) | (byte(i + 1u) << 8u);
}

fn special(h: u32) -> bool {
  return (h & 0x7c00u) == 0x7c00u;
}

// A finite f16 as f32 (exact): gpu/f16.wgsl's f16_value.
fn f16(h: u32) -> f32 {
  return f16_value(h);
}

// The K-quants' f16 pair (d, dmin) at byte i: special when either is inf or NaN; else as f32.
fn special2(i: u32) -> bool {
  return special(half16(i)) || special(half16(i + 2u));
}

fn f16x2(i: u32) -> vec2<f32> {
  return vec2<f32>(f16(half16(i)), f16(half16(i + 2u)));
}

fn sbyte(b: u32) -> i32 {
  return i32(b << 24u) >> 24u;
}

fn q8_0(b: u32) -> bool {
  let p = b * 34u;
  let h = half16(p);
  if (special(h)) { return false; }
  let d = f16(h);
  for (var j = 0u; j < 32u; j++) { dst[b * 32u + j] = f32(sbyte(byte(p + 2u + j))) * d; }
  return true;
}

fn q4_0(b: u32) -> bool {
  let p = b * 18u;
  let h = half16(p);
  if (special(h)) { return false; }
  let d = f16(h);
  for (var j = 0u; j < 16u; j++) {
    let q = byte(p + 2u + j);
    dst[b * 32u + j] = f32(i32(q & 15u) - 8) * d;
    dst[b * 32u + j + 16u] = f32(i32(q >> 4u) - 8) * d;
  }
  return true;
}

// get_scale_min_k4: the 6-bit scale (k = 0) or min (k = 1) of sub-block j, from the 12 bytes at s.
fn scale_min(s: u32, j: u32, k: u32) -> u32 {
  if (j < 4u) { return byte(s + j + 4u * k) & 63u; }
  if (k == 0u) { return (byte(s + j + 4u) & 15u) | ((byte(s + j - 4u) >> 6u) << 4u); }
  return (byte(s + j + 4u) >> 4u) | ((byte(s + j) >> 6u) << 4u);
}

// Q4_K/Q5_K sub-blocks j and j+1: (d1, m1, d2, m2) from the 12 scale bytes at s and the block's (d, dmin).
fn pair_k4(s: u32, j: u32, dm: vec2<f32>) -> vec4<f32> {
  return vec4<f32>(
    dm.x * f32(scale_min(s, j, 0u)), dm.y * f32(scale_min(s, j, 1u)),
    dm.x * f32(scale_min(s, j + 1u, 0u)), dm.y * f32(scale_min(s, j + 1u, 1u)));
}

fn q4_k(b: u32) -> bool {
  let p = b * 144u;
  if (special2(p)) { return false; }
  let dm = f16x2(p);
  for (var j = 0u; j < 8u; j += 2u) {
    let s = pair_k4(p + 4u, j, dm);
    let o = b * 256u + j * 32u;
    for (var l = 0u; l < 32u; l++) {
      let q = byte(p + 16u + j * 16u + l);
      dst[o + l] = s.x * f32(q & 15u) - s.y;
      dst[o + l + 32u] = s.z * f32(q >> 4u) - s.w;
    }
  }
  return true;
}

// Q2_K and Q3_K hold 2-bit planes: sub-block s (of sixteen, 16 values each, in output order)
// is bits `y` of the 16 quant bytes at x (from the block's first quant byte); z is its half of
// the 32-byte row (Q3_K's high-bit mask bytes share it).
fn plane(s: u32) -> vec3<u32> {
  let z = (s & 1u) * 16u;
  return vec3<u32>((s >> 3u) * 32u + z, ((s >> 1u) & 3u) * 2u, z);
}

fn q2_k(b: u32) -> bool {
  let p = b * 84u;
  if (special2(p + 80u)) { return false; }
  let dm = f16x2(p + 80u);
  for (var s = 0u; s < 16u; s++) {
    let pl = plane(s);
    let sc = byte(p + s);
    let dl = dm.x * f32(sc & 15u);
    let ml = dm.y * f32(sc >> 4u);
    let o = b * 256u + s * 16u;
    for (var l = 0u; l < 16u; l++) { dst[o + l] = dl * f32((byte(p + 16u + pl.x + l) >> pl.y) & 3u) - ml; }
  }
  return true;
}

// Q3_K's sixteen 6-bit scales, as ggml's kmask shuffle unpacks the 12 bytes at s (minus 32).
fn q3_scale(s: u32, j: u32) -> i32 {
  var low = byte(s + j - 8u) >> 4u;
  if (j < 8u) { low = byte(s + j) & 15u; }
  let high = (byte(s + 8u + (j & 3u)) >> (2u * (j >> 2u))) & 3u;
  return i32(low | (high << 4u)) - 32;
}

fn q3_k(b: u32) -> bool {
  let p = b * 110u;
  let h = half16(p + 108u);
  if (special(h)) { return false; }
  let d = f16(h);
  for (var s = 0u; s < 16u; s++) {
    let pl = plane(s);
    let dl = d * f32(q3_scale(p + 96u, s));
    // The high bit of each plane pass: mask bit (n·4 + shift/2) of the 32 hmask bytes.
    let m = 1u << (s >> 1u);
    let o = b * 256u + s * 16u;
    for (var l = 0u; l < 16u; l++) {
      let hm = select(4, 0, (byte(p + pl.z + l) & m) != 0u);
      dst[o + l] = dl * f32(i32((byte(p + 32u + pl.x + l) >> pl.y) & 3u) - hm);
    }
  }
  return true;
}

fn q5_k(b: u32) -> bool {
  let p = b * 176u;
  if (special2(p)) { return false; }
  let dm = f16x2(p);
  var u1 = 1u;
  var u2 = 2u;
  for (var j = 0u; j < 8u; j += 2u) {
    let s = pair_k4(p + 4u, j, dm);
    let o = b * 256u + j * 32u;
    for (var l = 0u; l < 32u; l++) {
      let q = byte(p + 48u + j * 16u + l);
      let hb = byte(p + 16u + l);
      dst[o + l] = s.x * f32((q & 15u) + select(0u, 16u, (hb & u1) != 0u)) - s.y;
      dst[o + l + 32u] = s.z * f32((q >> 4u) + select(0u, 16u, (hb & u2) != 0u)) - s.w;
    }
    u1 = u1 << 2u;
    u2 = u2 << 2u;
  }
  return true;
}

fn q6_k(b: u32) -> bool {
  let p = b * 210u;
  let h = half16(p + 208u);
  if (special(h)) { return false; }
  let d = f16(h);
  for (var n = 0u; n < 2u; n++) {
    let ql = p + n * 64u;
    let qh = p + 128u + n * 32u;
    let sc = p + 192u + n * 8u;
    let o = b * 256u + n * 128u;
    for (var l = 0u; l < 32u; l++) {
      let is = l / 16u;
      let hb = byte(qh + l);
      let q1 = i32((byte(ql + l) & 15u) | ((hb & 3u) << 4u)) - 32;
      let q2 = i32((byte(ql + l + 32u) & 15u) | (((hb >> 2u) & 3u) << 4u)) - 32;
      let q3 = i32((byte(ql + l) >> 4u) | (((hb >> 4u) & 3u) << 4u)) - 32;
      let q4 = i32((byte(ql + l + 32u) >> 4u) | (((hb >> 6u) & 3u) << 4u)) - 32;
      dst[o + l] = d * f32(sbyte(byte(sc + is))) * f32(q1);
      dst[o + l + 32u] = d * f32(sbyte(byte(sc + is + 2u))) * f32(q2);
      dst[o + l + 64u] = d * f32(sbyte(byte(sc + is + 4u))) * f32(q3);
      dst[o + l + 96u] = d * f32(sbyte(byte(sc + is + 6u))) * f32(q4);
    }
  }
  return true;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = gid.x + gid.y * nwg.x * WG;
  if (b >= params.blocks) { return; }
  var ok = true;
  switch TYPE {
    case 2u: { ok = q4_0(b); }
    case 10u: { ok = q2_k(b); }
    case 11u: { ok = q3_k(b); }
    case 12u: { ok = q4_k(b); }
    case 13u: { ok = q5_k(b); }
    case 14u: { ok = q6_k(b); }
    default: { ok = q8_0(b); }
  }
  flags[b] = select(1u, 0u, ok);
}
