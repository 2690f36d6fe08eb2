// A safetensors file with many small tensors (100,000 by default), for the per-tensor overhead
// checks in the reliability tests and the benchmark. Written directly, so that the file's
// layout does not depend on the writer under test.
import { writeFile } from 'node:fs/promises';

export interface ManyTensorsOptions {
  readonly count?: number;
  /** F32 elements per tensor: 32 × 4 bytes × 100,000 tensors ≈ 13 MB of data. */
  readonly elements?: number;
  /** Seed of the values, so that a second file differs from the first. */
  readonly seed?: number;
}

/** Writes the file and returns its tensor count. Values are a cheap deterministic pattern, a few of them zero. */
export async function writeManyTensors(path: string, opts: ManyTensorsOptions = {}): Promise<number> {
  const count = opts.count ?? 100_000;
  const n = opts.elements ?? 32;
  const seed = opts.seed ?? 1;
  const bytes = n * 4;
  const entries: string[] = [];
  for (let i = 0; i < count; i++) {
    // Names shaped like a real model's, so that the module tree and the diff matcher do real work.
    const name = `model.layers.${Math.floor(i / 10)}.block_${i % 10}.weight`;
    entries.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":[${n}],"data_offsets":[${i * bytes},${(i + 1) * bytes}]}`);
  }
  let json = `{"__metadata__":{"format":"pt"},${entries.join(',')}}`;
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const header = new TextEncoder().encode(json);
  const data = new Float32Array(count * n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    // xorshift32: fast and reproducible; every 7th value is zero to exercise the zero counters.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = i % 7 === 0 ? 0 : ((x >>> 0) / 2 ** 32 - 0.5) * 0.2;
  }
  const out = new Uint8Array(8 + header.length + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(new Uint8Array(data.buffer), 8 + header.length);
  await writeFile(path, out);
  return count;
}
