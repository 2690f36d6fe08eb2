// Products with Δ = B − A over a block of rows, Δ formed on the fly from the
// stored elements: `forward` writes Out = Δ·In (rows × K), `back` writes
// Out = Δᵀ·In (cols × K). One invocation per output element.

// 0 = F32, 1 = F16, 2 = BF16 (two 16-bit elements per u32 word, low half first).
override DTYPE: u32 = 2u;

// 64 invocations: a common wave size multiple, small enough for any adapter.
const WG: u32 = 64u;

struct Params {
  rows: u32,
  cols: u32,
  k: u32,
  nx: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<u32>;
@group(0) @binding(2) var<storage, read> B: array<u32>;
@group(0) @binding(3) var<storage, read> In: array<f32>;
@group(0) @binding(4) var<storage, read_write> Out: array<f32>;

fn value(bits: u32) -> f32 {
  if (DTYPE == 0u) {
    return bitcast<f32>(bits);
  }
  if (DTYPE == 1u) {
    return unpack2x16float(bits).x;
  }
  return bitcast<f32>(bits << 16u);
}

fn delta(i: u32) -> f32 {
  if (DTYPE == 0u) {
    return value(B[i]) - value(A[i]);
  }
  let hi = (i & 1u) == 1u;
  let wa = A[i >> 1u];
  let wb = B[i >> 1u];
  return value(select(wb & 0xffffu, wb >> 16u, hi)) - value(select(wa & 0xffffu, wa >> 16u, hi));
}

@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = (wid.x + wid.y * P.nx) * WG + lid.x;
  if (t >= P.rows * P.k) {
    return;
  }
  let r = t / P.k;
  let j = t % P.k;
  var acc = 0.0;
  for (var c = 0u; c < P.cols; c++) {
    acc += delta(r * P.cols + c) * In[c * P.k + j];
  }
  Out[t] = acc;
}

@compute @workgroup_size(WG)
fn back(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = (wid.x + wid.y * P.nx) * WG + lid.x;
  if (t >= P.cols * P.k) {
    return;
  }
  let c = t / P.k;
  let j = t % P.k;
  var acc = 0.0;
  for (var r = 0u; r < P.rows; r++) {
    acc += delta(r * P.cols + c) * In[r * P.k + j];
  }
  Out[t] = acc;
}
