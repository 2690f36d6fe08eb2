// ggml Q8_0, two blocks (68 bytes = 17 words) per invocation so that every write is whole words.
// The opening every ggml block shader shares (WG, Params, bindings, put) is ggmlBlocks.wgsl.
// The block's output words, written whole at the end.
var<private> ob: array<u32, 17>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * WG;
  if (t >= params.groups) { return; }
  for (var w = 0u; w < 17u; w = w + 1u) { ob[w] = 0u; }
  var flag = 0u;
  var sx2 = 0.0; var sy2 = 0.0; var sxy = 0.0; var se2 = 0.0; var emax = 0.0;
  for (var k = 0u; k < 2u; k = k + 1u) {
    let blk = t * 2u + k;
    if (blk >= params.blocks) { break; }
    let base = blk * 32u;
    var amax = 0u;
    var bad = false;
    for (var j = 0u; j < 32u; j = j + 1u) {
      let b = load_bits(base + j);
      bad = bad || unsafe_bits(b);
      amax = max(amax, b & 0x7fffffffu);
    }
    if (bad) {
      flag = flag | (1u << k);
      continue;
    }
    let d = div_rn(amax, 0x42fe0000u); // amax / 127
    var id = 0u;
    if (d != 0u) { id = div_rn(ONE, d); }
    let h = f32_to_f16(d);
    let o = k * 34u;
    put(o, h);
    put(o + 1u, h >> 8u);
    let dq = bitcast<f32>(f16_to_f32_bits(h));
    let idf = bitcast<f32>(id);
    for (var j = 0u; j < 32u; j = j + 1u) {
      let x = bitcast<f32>(load_bits(base + j));
      let q = roundf_i(bitcast<u32>(x * idf));
      put(o + 2u + j, u32(q));
      let y = f32(q) * dq;
      let e = x - y;
      sx2 += x * x; sy2 += y * y; sxy += x * y; se2 += e * e; emax = max(emax, abs(e));
    }
  }
  for (var w = 0u; w < 17u; w = w + 1u) { dst[t * 17u + w] = ob[w]; }
  flags[t] = flag;
  stats[t * 5u] = sx2; stats[t * 5u + 1u] = sy2; stats[t * 5u + 2u] = sxy; stats[t * 5u + 3u] = se2; stats[t * 5u + 4u] = emax;
}
