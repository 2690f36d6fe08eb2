// Statistics of dtypes of 16 bits or fewer, by bit pattern.
//   count:   histogram of the 2^BITS patterns (exact u32 counts; a slice holds < 2^32 elements).
//   collect: flat indices of the elements whose pattern is marked in `hot`
//            (2 = |x| above the top-k threshold, 1 = equal to it), for the top-k.
// Element i is bits [i*BITS, i*BITS + BITS) of the little-endian word stream.

override WG: u32 = 256u;
override BITS: u32 = 16u;

struct Params {
  count: u32,
  // Slots for |x| > T indices (fewer than k exist) and for |x| = T indices.
  greater_cap: u32,
  equal_cap: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> acc: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> hot: array<u32>;

// `pattern(i)` is patterns.wgsl, appended by stats.gpu.ts.

// Dtypes of 8 bits or fewer: a per-workgroup table in workgroup memory takes the
// contention (real tensors repeat few patterns), then one atomic per pattern per workgroup.
var<workgroup> local_hist: array<atomic<u32>, 256>;

// Counts this invocation's elements into `local_hist` (small) or straight into `acc`. Runs of
// one pattern cost one atomic: long runs (zeros, padding, constant tensors) would otherwise
// serialise on one counter.
fn count_runs(first: u32, stride: u32, small: bool) {
  var last = 0xffffffffu;
  var run = 0u;
  for (var i = first; i < params.count; i += stride) {
    let p = pattern(i);
    if (p == last) {
      run += 1u;
    } else {
      add_run(last, run, small);
      last = p;
      run = 1u;
    }
  }
  add_run(last, run, small);
}

fn add_run(p: u32, run: u32, small: bool) {
  if (run == 0u) { return; }
  if (small) {
    atomicAdd(&local_hist[p], run);
  } else {
    atomicAdd(&acc[p], run);
  }
}

@compute @workgroup_size(WG)
fn count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  count_runs(gid.x, nwg.x * WG, false);
}

@compute @workgroup_size(WG)
fn count_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let size = 1u << BITS;
  for (var j = lid; j < size; j += WG) { atomicStore(&local_hist[j], 0u); }
  workgroupBarrier();
  count_runs(gid.x, nwg.x * WG, true);
  workgroupBarrier();
  for (var j = lid; j < size; j += WG) {
    let c = atomicLoad(&local_hist[j]);
    if (c != 0u) { atomicAdd(&acc[j], c); }
  }
}

// acc layout: [0] greater found, [1] equal found, then greater_cap slots, then equal_cap slots.
@compute @workgroup_size(WG)
fn collect(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  for (var i = gid.x; i < params.count; i += stride) {
    let h = hot[pattern(i)];
    if (h == 2u) {
      let s = atomicAdd(&acc[0], 1u);
      if (s < params.greater_cap) { atomicStore(&acc[2u + s], i); }
    } else if (h == 1u && params.equal_cap != 0u) {
      let s = atomicAdd(&acc[1], 1u);
      if (s < params.equal_cap) { atomicStore(&acc[2u + params.greater_cap + s], i); }
    }
  }
}
