// Fused reductions over one chunk pair (Δ = B − A), one partial per workgroup.
// The host sums the f32 partials in f64; the integer outputs (index of the
// largest |Δ|, count of differing elements, histogram) are exact.

// DTYPE, A, B, bitsA, bitsB and value are diffElements.wgsl's.

// 256 invocations × 16 elements: a partial covers 4096 elements, so an f32
// partial sums at most 16 terms per invocation plus an 8-level tree, which keeps
// its relative error near 1e-6.
const WG: u32 = 256u;
const PER_THREAD: u32 = 16u;
const PARTIAL_WORDS: u32 = 8u;

struct Params {
  n: u32,
  hasB: u32,
  bins: u32,
  nx: u32,
  lo: f32,
  scale: f32,
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
// Per workgroup: sumA2, sumB2, dot, sumD2, sumAbsD, maxAbs (f32 bits), maxIndex, nDiff.
@group(0) @binding(3) var<storage, read_write> Out: array<u32>;
@group(0) @binding(4) var<storage, read_write> Hist: array<atomic<u32>>;

var<workgroup> sSums: array<vec4<f32>, WG>;
var<workgroup> sAbs: array<f32, WG>;
var<workgroup> sMax: array<f32, WG>;
var<workgroup> sIdx: array<u32, WG>;
var<workgroup> sDiff: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.x + wid.y * P.nx;
  let base = g * WG * PER_THREAD;
  var sums = vec4<f32>(0.0);
  var sad = 0.0;
  var mx = 0.0;
  var mi = 0xffffffffu;
  var nd = 0u;
  for (var k = 0u; k < PER_THREAD; k++) {
    // Consecutive invocations read consecutive elements; within one invocation indices grow with k.
    let i = base + k * WG + lid.x;
    if (i < P.n) {
      let ba = bitsA(i);
      var bb = ba;
      if (P.hasB != 0u) {
        bb = bitsB(i);
      }
      let x = value(ba);
      let y = value(bb);
      let d = y - x;
      sums += vec4<f32>(x * x, y * y, x * y, d * d);
      let ad = abs(d);
      sad += ad;
      if (ad > mx) {
        mx = ad;
        mi = i;
      }
      if (ba != bb) {
        nd += 1u;
        if (P.bins > 0u && d == d) {
          let t = clamp(floor((d - P.lo) * P.scale), 0.0, f32(P.bins - 1u));
          atomicAdd(&Hist[u32(t)], 1u);
        }
      }
    }
  }
  sSums[lid.x] = sums;
  sAbs[lid.x] = sad;
  sMax[lid.x] = mx;
  sIdx[lid.x] = mi;
  sDiff[lid.x] = nd;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) {
      let o = lid.x + s;
      sSums[lid.x] += sSums[o];
      sAbs[lid.x] += sAbs[o];
      sDiff[lid.x] += sDiff[o];
      let om = sMax[o];
      let oi = sIdx[o];
      if (om > sMax[lid.x] || (om == sMax[lid.x] && oi < sIdx[lid.x])) {
        sMax[lid.x] = om;
        sIdx[lid.x] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let o = g * PARTIAL_WORDS;
    Out[o] = bitcast<u32>(sSums[0].x);
    Out[o + 1u] = bitcast<u32>(sSums[0].y);
    Out[o + 2u] = bitcast<u32>(sSums[0].z);
    Out[o + 3u] = bitcast<u32>(sSums[0].w);
    Out[o + 4u] = bitcast<u32>(sAbs[0]);
    Out[o + 5u] = bitcast<u32>(sMax[0]);
    Out[o + 6u] = sIdx[0];
    Out[o + 7u] = sDiff[0];
  }
}
