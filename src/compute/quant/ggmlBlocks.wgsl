// The driver of every ggml block shader (q8_0.wgsl, q4_0.wgsl, q4_1.wgsl), prepended to
// each by ggmlBlocks.gpu.ts. Each shader supplies `quant_block(o, base)`: it quantizes the 32
// values at `base`, puts the block's bytes at byte `o` of `ob`, adds to the sums below, and
// returns false (writing nothing) when the block must be redone on the host.
override WG: u32 = 64u;
// Blocks per invocation (enough that one invocation writes whole 32-bit words) and bytes per block.
override BLOCKS: u32 = 2u;
override BLOCK_BYTES: u32 = 34u;

struct Params { groups: u32, blocks: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
// Per invocation: Σx², Σy², Σxy, Σ(x−y)², max|x−y| over its exact blocks.
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
// Per invocation: bit k set when block k must be redone on the host.
@group(0) @binding(3) var<storage, read_write> flags: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

// The invocation's output words, written whole at the end: room for the largest group
// (Q8_0's two 34-byte blocks).
var<private> ob: array<u32, 17>;
// The invocation's sums (see `stats`), added to by `quant_block`.
var<private> sx2: f32;
var<private> sy2: f32;
var<private> sxy: f32;
var<private> se2: f32;
var<private> emax: f32;

fn put(i: u32, v: u32) {
  ob[i >> 2u] = ob[i >> 2u] | ((v & 0xffu) << ((i & 3u) * 8u));
}

// Puts f32 bits `w` as an f16 at bytes o, o+1 (little end first); returns that f16's value.
fn put_half(o: u32, w: u32) -> f32 {
  let h = f32_to_f16(w);
  put(o, h);
  put(o + 1u, h >> 8u);
  return bitcast<f32>(f16_to_f32_bits(h));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * WG;
  if (t >= params.groups) { return; }
  let words = BLOCKS * BLOCK_BYTES / 4u;
  for (var w = 0u; w < words; w = w + 1u) { ob[w] = 0u; }
  sx2 = 0.0; sy2 = 0.0; sxy = 0.0; se2 = 0.0; emax = 0.0;
  var flag = 0u;
  for (var k = 0u; k < BLOCKS; k = k + 1u) {
    let blk = t * BLOCKS + k;
    if (blk >= params.blocks) { break; }
    if (!quant_block(k * BLOCK_BYTES, blk * 32u)) { flag = flag | (1u << k); }
  }
  for (var w = 0u; w < words; w = w + 1u) { dst[t * words + w] = ob[w]; }
  flags[t] = flag;
  stats[t * 5u] = sx2; stats[t * 5u + 1u] = sy2; stats[t * 5u + 2u] = sxy; stats[t * 5u + 3u] = se2; stats[t * 5u + 4u] = emax;
}

// The block's value of largest magnitude as f32 bits (strictly greater: the first of equal
// magnitudes wins, whatever its sign), and whether any of its values is unsafe.
struct AbsMax { bits: u32, bad: bool }

fn block_absmax(base: u32) -> AbsMax {
  var amax = 0u;
  var maxb = 0u;
  var bad = false;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let b = load_bits(base + j);
    bad = bad || unsafe_bits(b);
    if ((b & 0x7fffffffu) > amax) {
      amax = b & 0x7fffffffu;
      maxb = b;
    }
  }
  return AbsMax(maxb, bad);
}
