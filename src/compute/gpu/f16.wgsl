// binary16 → binary32, exactly and in integer arithmetic (inf and NaN kept), prepended by the
// shaders that read f16 (quantizers, dequant, matmul): every f16 subnormal is a normal f32.
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    if (m == 0u) { return sign; }
    // m·2^-24 = 1.f·2^(lb−24).
    let lb = firstLeadingBit(m);
    return sign | ((lb + 103u) << 23u) | ((m << (23u - lb)) & 0x7fffffu);
  }
  if (e == 31u) { return sign | 0x7f800000u | (m << 13u); }
  return sign | ((e + 112u) << 23u) | (m << 13u);
}

fn f16_value(h: u32) -> f32 {
  return bitcast<f32>(f16_to_f32_bits(h));
}
