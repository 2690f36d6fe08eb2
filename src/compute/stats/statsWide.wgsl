// Statistics of F32 slices (the two-phase path; see stats.ts).
//   scan:    counts, min/max (atomics on order-preserving keys), smallest non-zero |x|,
//            a 65,536-bucket table of |x|'s top 16 bits (locates the top-k), and per-workgroup
//            sums: Kahan in each invocation, then a pairwise tree, reduced on the host in f64.
//   m2:      per-workgroup Σ (x − mean)², the same way.
//   collect: indices of finite values whose |x| bucket is at least `bucket`.
//   bins:    both histograms, nearZero and outliers against edges and thresholds that the
//            host rounded to f32 so that every comparison decides as the f64 one would.

override WG: u32 = 256u;

struct Params {
  count: u32,
  cap: u32,
  bucket: u32,
  bins: u32,
  mean: f32,
  near: f32,
  // Outliers: x >= hi or x <= lo.
  hi: f32,
  lo: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<storage, read> edges: array<f32>;

// acc layout of `scan`: counts, then the |x| bucket table.
const NAN = 0u;
const POS_INF = 1u;
const NEG_INF = 2u;
const ZEROS = 3u;
const FINITE = 4u;
const MIN_KEY = 5u;
const MAX_KEY = 6u;
const MIN_ABS_NZ = 7u;
const BUCKETS = 8u;

var<workgroup> tree: array<f32, WG>;

/** Maps f32 bits to u32 so that unsigned order is float order. */
fn key(bits: u32) -> u32 {
  if ((bits & 0x80000000u) != 0u) { return ~bits; }
  return bits | 0x80000000u;
}

/** Pairwise sum of the workgroup's values; invocation 0 writes it to partials[group]. */
fn reduce(v: f32, lid: u32, group: u32) {
  tree[lid] = v;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half = half / 2u) {
    if (lid < half) { tree[lid] = tree[lid] + tree[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[group] = tree[0]; }
}

@compute @workgroup_size(WG)
fn scan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  var nan = 0u; var pinf = 0u; var ninf = 0u; var zeros = 0u; var finite = 0u;
  var kmin = 0xffffffffu; var kmax = 0u; var minnz = 0xffffffffu;
  var s = 0.0; var c = 0.0;
  var last = 0xffffffffu; var run = 0u;
  for (var i = gid.x; i < params.count; i += stride) {
    let bits = bitcast<u32>(src[i]);
    let a = bits & 0x7fffffffu;
    if (a > 0x7f800000u) { nan += 1u; continue; }
    if (a == 0x7f800000u) {
      if (bits == a) { pinf += 1u; } else { ninf += 1u; }
      continue;
    }
    finite += 1u;
    if (a == 0u) { zeros += 1u; } else { minnz = min(minnz, a); }
    let k = key(bits);
    kmin = min(kmin, k);
    kmax = max(kmax, k);
    // Kahan: c carries what the running sum lost.
    let y = bitcast<f32>(bits) - c;
    let t = s + y;
    c = (t - s) - y;
    s = t;
    let b = a >> 16u;
    if (b == last) { run += 1u; } else {
      if (run != 0u) { atomicAdd(&acc[BUCKETS + last], run); }
      last = b;
      run = 1u;
    }
  }
  if (run != 0u) { atomicAdd(&acc[BUCKETS + last], run); }
  if (nan != 0u) { atomicAdd(&acc[NAN], nan); }
  if (pinf != 0u) { atomicAdd(&acc[POS_INF], pinf); }
  if (ninf != 0u) { atomicAdd(&acc[NEG_INF], ninf); }
  if (zeros != 0u) { atomicAdd(&acc[ZEROS], zeros); }
  if (finite != 0u) {
    atomicAdd(&acc[FINITE], finite);
    atomicMin(&acc[MIN_KEY], kmin);
    atomicMax(&acc[MAX_KEY], kmax);
    atomicMin(&acc[MIN_ABS_NZ], minnz);
  }
  reduce(s - c, lid, wid.x);
}

@compute @workgroup_size(WG)
fn m2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
      @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  var s = 0.0; var c = 0.0;
  for (var i = gid.x; i < params.count; i += stride) {
    let x = src[i];
    if ((bitcast<u32>(x) & 0x7fffffffu) >= 0x7f800000u) { continue; }
    let d = x - params.mean;
    let y = d * d - c;
    let t = s + y;
    c = (t - s) - y;
    s = t;
  }
  reduce(s - c, lid, wid.x);
}

// acc layout of `collect`: [0] found, then `cap` index slots.
@compute @workgroup_size(WG)
fn collect(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  for (var i = gid.x; i < params.count; i += stride) {
    let a = bitcast<u32>(src[i]) & 0x7fffffffu;
    if (a < 0x7f800000u && (a >> 16u) >= params.bucket) {
      let slot = atomicAdd(&acc[0], 1u);
      if (slot < params.cap) { atomicStore(&acc[1u + slot], i); }
    }
  }
}

/** The last k in [0, bins) with x >= edges[base + k] (edges increasing). */
fn bin_of(x: f32, base: u32) -> u32 {
  var lo = 0u;
  var hi = params.bins - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (x >= edges[base + mid]) { lo = mid; } else { hi = mid - 1u; }
  }
  return lo;
}

// acc layout of `bins`: bins linear counts, bins log counts, nearZero, outliers.
@compute @workgroup_size(WG)
fn bins(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  let nb = params.bins;
  var near = 0u; var out = 0u;
  for (var i = gid.x; i < params.count; i += stride) {
    let x = src[i];
    let a = abs(x);
    if ((bitcast<u32>(x) & 0x7fffffffu) >= 0x7f800000u) { continue; }
    atomicAdd(&acc[bin_of(x, 0u)], 1u);
    if (a != 0.0) { atomicAdd(&acc[nb + bin_of(a, nb + 1u)], 1u); }
    if (a == 0.0 || a < params.near) { near += 1u; }
    if (x >= params.hi || x <= params.lo) { out += 1u; }
  }
  if (near != 0u) { atomicAdd(&acc[2u * nb], near); }
  if (out != 0u) { atomicAdd(&acc[2u * nb + 1u], out); }
}
