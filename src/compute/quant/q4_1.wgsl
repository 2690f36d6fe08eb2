// ggml Q4_1: 20-byte blocks, one per invocation (5 words). The driver (main, bindings, put,
// the sums) is ggmlBlocks.wgsl.

fn quant_block(o: u32, base: u32) -> bool {
  // The first value starts both extremes (the reference's FLT_MAX start gives the same).
  var mnb = load_bits(base);
  var mxb = mnb;
  var bad = unsafe_bits(mnb);
  for (var j = 1u; j < 32u; j = j + 1u) {
    let b = load_bits(base + j);
    bad = bad || unsafe_bits(b);
    if (bitcast<f32>(b) < bitcast<f32>(mnb)) { mnb = b; }
    if (bitcast<f32>(b) > bitcast<f32>(mxb)) { mxb = b; }
  }
  if (bad) { return false; }
  let mn = bitcast<f32>(mnb);
  // Differences of values in [2^-96, 2^126) (or zero) are normal or zero, so rounded exactly.
  let range = bitcast<u32>(bitcast<f32>(mxb) - mn) & 0x7fffffffu;
  let d = div_rn(range, 0x41700000u); // / 15
  var id = 0u;
  if (d != 0u) { id = div_rn(ONE, d); }
  let dq = put_half(o, d);
  let mq = put_half(o + 2u, mnb);
  let idf = bitcast<f32>(id);
  for (var j = 0u; j < 16u; j = j + 1u) {
    let x0 = bitcast<f32>(load_bits(base + j));
    let x1 = bitcast<f32>(load_bits(base + j + 16u));
    let q0 = min(15u, trunc_add(bitcast<u32>((x0 - mn) * idf), 0x1000000u)); // + 0.5
    let q1 = min(15u, trunc_add(bitcast<u32>((x1 - mn) * idf), 0x1000000u));
    put(o + 4u + j, q0 | (q1 << 4u));
    let y0 = f32(q0) * dq + mq;
    let y1 = f32(q1) * dq + mq;
    let e0 = x0 - y0;
    let e1 = x1 - y1;
    sx2 += x0 * x0 + x1 * x1; sy2 += y0 * y0 + y1 * y1; sxy += x0 * y0 + x1 * y1;
    se2 += e0 * e0 + e1 * e1; emax = max(emax, max(abs(e0), abs(e1)));
  }
  return true;
}
