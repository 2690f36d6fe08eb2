// The opening of every ggml block shader (q8_0.wgsl, q4_0.wgsl, q4_1.wgsl), prepended to
// each by ggmlBlocks.gpu.ts; each shader declares its own `ob` (its groups' output words).
override WG: u32 = 64u;

struct Params { groups: u32, blocks: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
// Per invocation: Σx², Σy², Σxy, Σ(x−y)², max|x−y| over its exact blocks.
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
// Per invocation: bit k set when block k must be redone on the host.
@group(0) @binding(3) var<storage, read_write> flags: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

fn put(i: u32, v: u32) {
  ob[i >> 2u] = ob[i >> 2u] | ((v & 0xffu) << ((i & 3u) * 8u));
}
