// ggml Q4_0: 18-byte blocks, two per invocation (36 bytes = 9 words) so that every write is whole
// words. The driver (main, bindings, put, the sums) is ggmlBlocks.wgsl.

fn quant_block(o: u32, base: u32) -> bool {
  let m = block_absmax(base);
  if (m.bad) { return false; }
  // d = max / −8: flip the sign, subtract 3 from the exponent (exact for these normals); 0/−8 is −0.
  var d = 0x80000000u;
  var id = 0u;
  if ((m.bits & 0x7fffffffu) != 0u) {
    d = (m.bits ^ 0x80000000u) - (3u << 23u);
    id = div_rn(ONE, d);
  }
  let dq = put_half(o, d);
  let idf = bitcast<f32>(id);
  for (var j = 0u; j < 16u; j = j + 1u) {
    let x0 = bitcast<f32>(load_bits(base + j));
    let x1 = bitcast<f32>(load_bits(base + j + 16u));
    let q0 = min(15u, trunc_add(bitcast<u32>(x0 * idf), 0x11000000u)); // + 8.5
    let q1 = min(15u, trunc_add(bitcast<u32>(x1 * idf), 0x11000000u));
    put(o + 2u + j, q0 | (q1 << 4u));
    let y0 = (f32(q0) - 8.0) * dq;
    let y1 = (f32(q1) - 8.0) * dq;
    let e0 = x0 - y0;
    let e1 = x1 - y1;
    sx2 += x0 * x0 + x1 * x1; sy2 += y0 * y0 + y1 * y1; sxy += x0 * y0 + x1 * y1;
    se2 += e0 * e0 + e1 * e1; emax = max(emax, max(abs(e0), abs(e1)));
  }
  return true;
}
