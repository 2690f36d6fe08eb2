// Element i of a packed dtype: bits [i*BITS, i*BITS + BITS) of the little-endian u32 word
// stream `src` (sub-byte dtypes LSB-first). Appended to decode.wgsl and stats.wgsl, which
// declare `src` and the BITS override.
fn pattern(i: u32) -> u32 {
  let bit = i * BITS;
  let word = bit >> 5u;
  let shift = bit & 31u;
  var p = src[word] >> shift;
  if (shift + BITS > 32u) {
    p = p | (src[word + 1u] << (32u - shift));
  }
  if (BITS == 32u) { return p; }
  return p & ((1u << BITS) - 1u);
}
