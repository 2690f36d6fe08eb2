// ggml Q8_0: 34-byte blocks, two per invocation (68 bytes = 17 words) so that every write is
// whole words. The driver (main, bindings, put, the sums) is ggmlBlocks.wgsl.

fn quant_block(o: u32, base: u32) -> bool {
  let m = block_absmax(base);
  if (m.bad) { return false; }
  let d = div_rn(m.bits & 0x7fffffffu, 0x42fe0000u); // amax / 127
  var id = 0u;
  if (d != 0u) { id = div_rn(ONE, d); }
  let dq = put_half(o, d);
  let idf = bitcast<f32>(id);
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = bitcast<f32>(load_bits(base + j));
    let q = roundf_i(bitcast<u32>(x * idf));
    put(o + 2u + j, u32(q));
    let y = f32(q) * dq;
    let e = x - y;
    sx2 += x * x; sy2 += y * y; sxy += x * y; se2 += e * e; emax = max(emax, abs(e));
  }
  return true;
}
