// The two chunks both diff shaders read, prepended to each by its .gpu.ts: elements of A and B
// by flat index, as raw bits (`bitsA`, `bitsB`) and as f32 (`value`).

// 0 = F32, 1 = F16, 2 = BF16 (two 16-bit elements per u32 word, low half first).
override DTYPE: u32 = 2u;

@group(0) @binding(1) var<storage, read> A: array<u32>;
@group(0) @binding(2) var<storage, read> B: array<u32>;

// Element i's bits within its word w (16-bit dtypes: the low half is the even element).
fn half_of(w: u32, i: u32) -> u32 {
  return select(w & 0xffffu, w >> 16u, (i & 1u) == 1u);
}

fn bitsA(i: u32) -> u32 {
  if (DTYPE == 0u) { return A[i]; }
  return half_of(A[i >> 1u], i);
}

fn bitsB(i: u32) -> u32 {
  if (DTYPE == 0u) { return B[i]; }
  return half_of(B[i >> 1u], i);
}

fn value(bits: u32) -> f32 {
  if (DTYPE == 0u) {
    return bitcast<f32>(bits);
  }
  if (DTYPE == 1u) {
    return unpack2x16float(bits).x;
  }
  return bitcast<f32>(bits << 16u);
}
