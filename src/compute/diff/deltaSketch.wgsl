// Products with Δ = B − A over a block of rows, Δ formed on the fly from the
// stored elements: `forward` writes Out = Δ·In (rows × K), `back` writes
// Out = Δᵀ·In (cols × K). One invocation per output element.

// DTYPE, A, B and the element readers are diffElements.wgsl's.

// 64 invocations: a common wave size multiple, small enough for any adapter.
const WG: u32 = 64u;

struct Params {
  rows: u32,
  cols: u32,
  k: u32,
  nx: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(3) var<storage, read> In: array<f32>;
@group(0) @binding(4) var<storage, read_write> Out: array<f32>;

fn delta(i: u32) -> f32 {
  return value(bitsB(i)) - value(bitsA(i));
}

// Out[t] for t = o·k + j: Σ over m < inner of Δ[o·so + m·sm] · In[m·k + j], in m order.
// `forward` runs it over Δ's rows (o = row, m = column), `back` over its columns.
fn product(t: u32, outer: u32, inner: u32, so: u32, sm: u32) {
  if (t >= outer * P.k) {
    return;
  }
  let o = t / P.k;
  let j = t % P.k;
  var acc = 0.0;
  for (var m = 0u; m < inner; m++) {
    acc += delta(o * so + m * sm) * In[m * P.k + j];
  }
  Out[t] = acc;
}

@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  product((wid.x + wid.y * P.nx) * WG + lid.x, P.rows, P.cols, P.cols, 1u);
}

@compute @workgroup_size(WG)
fn back(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  product((wid.x + wid.y * P.nx) * WG + lid.x, P.cols, P.rows, 1u, P.cols);
}
