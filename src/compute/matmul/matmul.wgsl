// W' = W + Σₖ b[o,k]·a[k,i], in double-f32 arithmetic, fused with the rounding
// to the output dtype. b is split on the host into hi + lo f32 halves of the
// float64 value (scale included).
//
// Two guards keep the arithmetic exact whatever the shader compiler does:
// - products: both factors are cut into 12-bit halves with an integer mask, so
//   every partial product is exact in f32, and contracting one into an fma
//   changes nothing (a plain TwoProduct, p = x·y then x·y − p, is broken by a
//   compiler that contracts x·y − p into fma(x, y, −p));
// - sums: TwoSum's error term is algebraically zero, so a compiler that
//   reassociates (seen on NVIDIA's Vulkan driver) deletes it. Every rounded
//   intermediate passes through `opaque`, a multiply by `params.one` (1.0, but
//   unknown at compile time), which no reassociation can see through.
// The sum is carried as a (hi, lo) pair, and the final narrowing uses lo to
// settle halfway cases, so the result is one correct rounding of a value good
// to about 2⁻⁴⁶ of the terms' magnitude.
//
// Each invocation writes one u32 word of 16-bit outputs, so it computes two
// adjacent elements; F32 and PAIR outputs use the same pairing.

override WG: u32 = 64u;
// 0: no base (Δ alone), 1: F32, 2: BF16, 3: F16.
override BASE: u32 = 2u;
// 1: F32, 2: BF16, 3: F16, 4: PAIR (hi, lo f32).
override OUT: u32 = 2u;
// 1: stored layout is Δᵀ ([in, out]).
override TRANSPOSE: u32 = 0u;

struct Params {
  count: u32, // elements in this tile
  first: u32, // stored index of the tile's first element
  cols: u32,
  rank: u32,
  in_features: u32,
  one: f32, // 1.0: see `opaque`
  _b: u32, _c: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> base: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b_hi: array<f32>;
@group(0) @binding(4) var<storage, read> b_lo: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<u32>;
// [0]: non-finite count, [1]: first non-finite element (min).
@group(0) @binding(6) var<storage, read_write> flags: array<atomic<u32>, 2>;

fn opaque(x: f32) -> f32 {
  return x * params.one;
}

fn two_sum(x: f32, y: f32) -> vec2<f32> {
  let s = opaque(x + y);
  let bb = opaque(s - x);
  let e = (x - opaque(s - bb)) + (y - bb);
  return vec2<f32>(s, e);
}

fn fast_two_sum(x: f32, y: f32) -> vec2<f32> {
  let s = opaque(x + y);
  return vec2<f32>(s, y - opaque(s - x));
}

// Top 12 significant bits by masking the low 12 mantissa bits: exact, no rounding involved.
fn split(x: f32) -> vec2<f32> {
  let h = bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
  return vec2<f32>(h, x - h);
}

fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
  let s = two_sum(x.x, y.x);
  return fast_two_sum(s.x, s.y + x.y + y.y);
}

// f16_value is gpu/f16.wgsl's.

fn base_value(i: u32) -> f32 {
  if (BASE == 1u) { return bitcast<f32>(base[i]); }
  let w = base[i >> 1u];
  let h = select(w & 0xffffu, w >> 16u, (i & 1u) == 1u);
  if (BASE == 2u) { return bitcast<f32>(h << 16u); }
  return f16_value(h);
}

// Ties at the narrow precision go away from zero when lo pushes |value| past |hi|.
fn tie_up(v: vec2<f32>, lsb: u32) -> bool {
  if (v.y == 0.0) { return lsb == 1u; }
  return (v.y > 0.0) == (v.x > 0.0);
}

fn round_bf16(v: vec2<f32>) -> u32 {
  let u = bitcast<u32>(v.x);
  if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u >> 16u) & 0x8000u) | 0x7fc0u; }
  var h = u >> 16u;
  let rem = u & 0xffffu;
  if (rem > 0x8000u || (rem == 0x8000u && tie_up(v, h & 1u))) { h = h + 1u; }
  return h & 0xffffu;
}

fn round_f16(v: vec2<f32>) -> u32 {
  let u = bitcast<u32>(v.x);
  let sign = (u >> 16u) & 0x8000u;
  let ex = (u >> 23u) & 0xffu;
  let man = u & 0x7fffffu;
  if (ex == 0xffu) { return select(sign | 0x7c00u, sign | 0x7e00u, man != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  var q: u32;
  var rem: u32;
  var half: u32;
  if (e > 0) {
    q = (u32(e) << 10u) | (man >> 13u);
    rem = man & 0x1fffu;
    half = 0x1000u;
  } else {
    let shift = u32(14 - e);
    if (shift > 24u) { return sign; }
    let m = select(man | 0x800000u, man, ex == 0u);
    q = m >> shift;
    rem = m & ((1u << shift) - 1u);
    half = 1u << (shift - 1u);
  }
  if (rem > half || (rem == half && tie_up(v, q & 1u))) { q = q + 1u; }
  return sign | q;
}

fn is_finite_f32(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// The merged value of tile element j as a normalised (hi, lo) pair.
fn merged(j: u32) -> vec2<f32> {
  let e = params.first + j;
  let row = e / params.cols;
  let col = e - row * params.cols;
  var o = row;
  var i = col;
  if (TRANSPOSE == 1u) { o = col; i = row; }
  var acc = vec2<f32>(0.0, 0.0);
  let K = params.rank;
  for (var k = 0u; k < K; k = k + 1u) {
    let av = a[k * params.in_features + i];
    let sa = split(av);
    let sb = split(b_hi[o * K + k]);
    // b_hi·a as four exact partial products; b_lo·a is ~2⁻²⁴ of the term, so its own rounding is negligible.
    acc = df_add(acc, two_sum(sb.x * sa.x, sb.x * sa.y));
    acc = df_add(acc, vec2<f32>(sb.y * sa.x, sb.y * sa.y + b_lo[o * K + k] * av));
  }
  if (BASE != 0u) {
    acc = df_add(acc, vec2<f32>(base_value(j), 0.0));
  }
  return acc;
}

fn note_non_finite(j: u32) {
  atomicAdd(&flags[0], 1u);
  atomicMin(&flags[1], j);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let p = gid.x + gid.y * nwg.x * WG;
  let j0 = 2u * p;
  if (j0 >= params.count) { return; }
  let has2 = j0 + 1u < params.count;
  let v0 = merged(j0);
  var v1 = vec2<f32>(0.0, 0.0);
  if (has2) { v1 = merged(j0 + 1u); }
  if (OUT == 2u || OUT == 3u) {
    var h0: u32;
    var h1: u32 = 0u;
    var lim: u32 = 0x7f80u;
    if (OUT == 2u) {
      h0 = round_bf16(v0);
      if (has2) { h1 = round_bf16(v1); }
    } else {
      h0 = round_f16(v0);
      if (has2) { h1 = round_f16(v1); }
      lim = 0x7c00u;
    }
    if ((h0 & lim) == lim) { note_non_finite(j0); }
    if (has2 && (h1 & lim) == lim) { note_non_finite(j0 + 1u); }
    dst[p] = h0 | (h1 << 16u);
  } else if (OUT == 1u) {
    if (!is_finite_f32(v0.x)) { note_non_finite(j0); }
    dst[j0] = bitcast<u32>(v0.x);
    if (has2) {
      if (!is_finite_f32(v1.x)) { note_non_finite(j0 + 1u); }
      dst[j0 + 1u] = bitcast<u32>(v1.x);
    }
  } else {
    if (!is_finite_f32(v0.x)) { note_non_finite(j0); }
    dst[2u * j0] = bitcast<u32>(v0.x);
    dst[2u * j0 + 1u] = bitcast<u32>(select(0.0, v0.y, is_finite_f32(v0.x)));
    if (has2) {
      if (!is_finite_f32(v1.x)) { note_non_finite(j0 + 1u); }
      dst[2u * j0 + 2u] = bitcast<u32>(v1.x);
      dst[2u * j0 + 3u] = bitcast<u32>(select(0.0, v1.y, is_finite_f32(v1.x)));
    }
  }
}
