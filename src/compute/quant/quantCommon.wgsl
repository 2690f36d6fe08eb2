// Helpers shared by the quantizer shaders (prepended to each). WGSL division is not
// correctly rounded, a compiler may fuse a multiply and an add, and subnormals may be
// flushed, so every step that decides an output bit runs in integer arithmetic on f32
// bit patterns; the only float operations left are single products and differences
// of normal numbers, which WGSL rounds correctly. Blocks holding values outside
// [2^-96, 2^126) are flagged for the host to redo with the CPU twin.

// Input dtype: 0 = BF16, 1 = F16, 2 = F32 (each element read as its f32 bit pattern).
override DTYPE: u32 = 0u;

// Nonzero |x| below 2^-96 (subnormals included) or at/above 2^126 (inf too): the host redoes the block.
const SAFE_MIN: u32 = 0x0f800000u;
const SAFE_MAX: u32 = 0x7e800000u;
const ONE: u32 = 0x3f800000u;

// f16_to_f32_bits is gpu/f16.wgsl's.

fn load_bits(i: u32) -> u32 {
  if (DTYPE == 2u) { return src[i]; }
  let w = src[i >> 1u];
  let h = select(w & 0xffffu, w >> 16u, (i & 1u) == 1u);
  if (DTYPE == 0u) { return h << 16u; }
  return f16_to_f32_bits(h);
}

// a / b correctly rounded (to nearest even), on bit patterns. b must be a normal
// number and a zero or normal; a quotient below the normal range returns a signed
// zero (callers only use quotients far above it), and none may overflow.
fn div_rn(a: u32, b: u32) -> u32 {
  let sign = (a ^ b) & 0x80000000u;
  let aa = a & 0x7fffffffu;
  if (aa == 0u) { return sign; }
  var ma = (aa & 0x7fffffu) | 0x800000u;
  let mb = (b & 0x7fffffu) | 0x800000u;
  var e = i32(aa >> 23u) - i32((b >> 23u) & 0xffu) + 127;
  if (ma < mb) {
    ma = ma << 1u;
    e = e - 1;
  }
  // Long division: 24 quotient bits, then the remainder decides the rounding.
  var q = 0u;
  var r = ma;
  for (var i = 0u; i < 24u; i = i + 1u) {
    q = q << 1u;
    if (r >= mb) {
      r = r - mb;
      q = q | 1u;
    }
    r = r << 1u;
  }
  if (r > mb || (r == mb && (q & 1u) == 1u)) { q = q + 1u; }
  if (q == 0x1000000u) {
    q = 0x800000u;
    e = e + 1;
  }
  if (e <= 0) { return sign; }
  return sign | (u32(e) << 23u) | (q & 0x7fffffu);
}

// f32 bits → binary16 bits, round to nearest even, overflow to inf.
fn f32_to_f16(w: u32) -> u32 {
  let sign = (w >> 16u) & 0x8000u;
  let ex = (w >> 23u) & 0xffu;
  let mant = w & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  if (ex >= 143u) { return sign | 0x7c00u; }
  if (ex <= 112u) {
    if (ex < 102u) { return sign; }
    let full = mant | 0x800000u;
    let sh = 126u - ex;
    var q = full >> sh;
    let rem = full & ((1u << sh) - 1u);
    let half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u) == 1u)) { q = q + 1u; }
    return sign | q;
  }
  var q = mant >> 13u;
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u)) { q = q + 1u; }
  return sign | (((ex - 112u) << 10u) + q);
}

// C's roundf (halves away from zero) of an f32 given by its bits, |p| < 256.
fn roundf_i(p: u32) -> i32 {
  let a = p & 0x7fffffffu;
  if (a < 0x3f000000u) { return 0; }
  let sh = 150u - (a >> 23u); // fraction bits: 23 − unbiased exponent
  let m = (a & 0x7fffffu) | 0x800000u;
  let v = i32((m + (1u << (sh - 1u))) >> sh);
  return select(v, -v, (p >> 31u) == 1u);
}

// Round half to even of an f32 given by its bits, |p| < 256.
fn rne_i(p: u32) -> i32 {
  let a = p & 0x7fffffffu;
  if (a < 0x3f000000u) { return 0; }
  let sh = 150u - (a >> 23u);
  let m = (a & 0x7fffffu) | 0x800000u;
  var v = m >> sh;
  let rem = m & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  if (rem > half || (rem == half && (v & 1u) == 1u)) { v = v + 1u; }
  return select(i32(v), -i32(v), (p >> 31u) == 1u);
}

// trunc(fl32(p + c)) with c = cfix·2^-25 (0.5 or 8.5), for −8.5 < p < 16.5: the sum is
// formed exactly in 2^-25 fixed point, then rounded to 24 significant bits as f32 would.
fn trunc_add(p: u32, cfix: u32) -> u32 {
  let a = p & 0x7fffffffu;
  // |p| < 1/4 keeps p + c inside (c − 1/4, c + 1/4): the same integer part as c.
  if (a < 0x3e800000u) { return cfix >> 25u; }
  let m = (a & 0x7fffffu) | 0x800000u;
  let pf = m << ((a >> 23u) - 125u); // p·2^25, exact since p's ulp is at least 2^-25 here
  var s = cfix + pf;
  if ((p >> 31u) == 1u) { s = cfix - pf; }
  let hb = firstLeadingBit(s);
  if (hb > 23u) {
    let sh = hb - 23u;
    var q = s >> sh;
    let rem = s & ((1u << sh) - 1u);
    let half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u) == 1u)) { q = q + 1u; }
    s = q << sh;
  }
  return s >> 25u;
}

// Is this nonzero value outside the range the shader handles exactly?
fn unsafe_bits(b: u32) -> bool {
  let a = b & 0x7fffffffu;
  return a != 0u && (a < SAFE_MIN || a >= SAFE_MAX);
}
