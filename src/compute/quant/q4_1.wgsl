// ggml Q4_1, one block (20 bytes = 5 words) per invocation.
// The opening every ggml block shader shares (WG, Params, bindings, put) is ggmlBlocks.wgsl.
// The block's output words, written whole at the end.
var<private> ob: array<u32, 5>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * WG;
  if (t >= params.groups) { return; }
  for (var w = 0u; w < 5u; w = w + 1u) { ob[w] = 0u; }
  var sx2 = 0.0; var sy2 = 0.0; var sxy = 0.0; var se2 = 0.0; var emax = 0.0;
  let base = t * 32u;
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
  if (bad) {
    flags[t] = 1u;
    return;
  }
  let mn = bitcast<f32>(mnb);
  // Differences of values in [2^-96, 2^126) (or zero) are normal or zero, so rounded exactly.
  let range = bitcast<u32>(bitcast<f32>(mxb) - mn) & 0x7fffffffu;
  let d = div_rn(range, 0x41700000u); // / 15
  var id = 0u;
  if (d != 0u) { id = div_rn(ONE, d); }
  let hd = f32_to_f16(d);
  let hm = f32_to_f16(mnb);
  put(0u, hd); put(1u, hd >> 8u); put(2u, hm); put(3u, hm >> 8u);
  let dq = bitcast<f32>(f16_to_f32_bits(hd));
  let mq = bitcast<f32>(f16_to_f32_bits(hm));
  let idf = bitcast<f32>(id);
  for (var j = 0u; j < 16u; j = j + 1u) {
    let x0 = bitcast<f32>(load_bits(base + j));
    let x1 = bitcast<f32>(load_bits(base + j + 16u));
    let q0 = min(15u, trunc_add(bitcast<u32>((x0 - mn) * idf), 0x1000000u)); // + 0.5
    let q1 = min(15u, trunc_add(bitcast<u32>((x1 - mn) * idf), 0x1000000u));
    put(4u + j, q0 | (q1 << 4u));
    let y0 = f32(q0) * dq + mq;
    let y1 = f32(q1) * dq + mq;
    let e0 = x0 - y0;
    let e1 = x1 - y1;
    sx2 += x0 * x0 + x1 * x1; sy2 += y0 * y0 + y1 * y1; sxy += x0 * y0 + x1 * y1;
    se2 += e0 * e0 + e1 * e1; emax = max(emax, max(abs(e0), abs(e1)));
  }
  for (var w = 0u; w < 5u; w = w + 1u) { dst[t * 5u + w] = ob[w]; }
  flags[t] = 0u;
  stats[t * 5u] = sx2; stats[t * 5u + 1u] = sy2; stats[t * 5u + 2u] = sxy; stats[t * 5u + 3u] = se2; stats[t * 5u + 4u] = emax;
}
