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

fn pattern(i: u32) -> u32 {
  let bit = i * BITS;
  let word = bit >> 5u;
  let shift = bit & 31u;
  var p = src[word] >> shift;
  if (shift + BITS > 32u) {
    p = p | (src[word + 1u] << (32u - shift));
  }
  return p & ((1u << BITS) - 1u);
}

@compute @workgroup_size(WG)
fn count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  // Runs of one pattern cost one atomic: long runs (zeros, padding, constant tensors) would otherwise serialise on one counter.
  var last = 0xffffffffu;
  var run = 0u;
  for (var i = gid.x; i < params.count; i += stride) {
    let p = pattern(i);
    if (p == last) {
      run += 1u;
    } else {
      if (run != 0u) { atomicAdd(&acc[last], run); }
      last = p;
      run = 1u;
    }
  }
  if (run != 0u) { atomicAdd(&acc[last], run); }
}

// Dtypes of 8 bits or fewer: a per-workgroup table in workgroup memory takes the
// contention (real tensors repeat few patterns), then one atomic per pattern per workgroup.
var<workgroup> local_hist: array<atomic<u32>, 256>;

@compute @workgroup_size(WG)
fn count_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let size = 1u << BITS;
  for (var j = lid; j < size; j += WG) { atomicStore(&local_hist[j], 0u); }
  workgroupBarrier();
  let stride = nwg.x * WG;
  var last = 0xffffffffu;
  var run = 0u;
  for (var i = gid.x; i < params.count; i += stride) {
    let p = pattern(i);
    if (p == last) {
      run += 1u;
    } else {
      if (run != 0u) { atomicAdd(&local_hist[last], run); }
      last = p;
      run = 1u;
    }
  }
  if (run != 0u) { atomicAdd(&local_hist[last], run); }
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
