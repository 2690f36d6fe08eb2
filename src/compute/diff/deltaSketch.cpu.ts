import { decodeChunkF32, Scratch } from './decodeChunk';
import type { DeltaSketchArgs, DeltaSketchResult } from './deltaSketch';

const scratchA = new Scratch();
const scratchB = new Scratch();

export function deltaSketchCpu(args: DeltaSketchArgs): DeltaSketchResult {
  const { rows, cols, k } = args;
  const n = rows * cols;
  const d = scratchA.get(n);
  const fb = scratchB.get(n);
  decodeChunkF32(args.dtype, args.a, n, d);
  decodeChunkF32(args.dtype, args.b, n, fb);
  // Δ in f32, as the GPU twin forms it.
  for (let i = 0; i < n; i++) d[i] = fb[i] - d[i];
  const x = Float64Array.from(args.x.subarray(0, cols * k));
  const y = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    const yo = r * k;
    for (let c = 0; c < cols; c++) {
      const dv = d[row + c];
      // Fine-tunes often leave many elements untouched: a zero Δ adds nothing.
      if (dv === 0) continue;
      const xo = c * k;
      for (let j = 0; j < k; j++) y[yo + j] += dv * x[xo + j];
    }
  }
  if (!args.back) return { y: Float32Array.from(y) };
  const z = new Float64Array(cols * k);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    const yo = r * k;
    for (let c = 0; c < cols; c++) {
      const dv = d[row + c];
      if (dv === 0) continue;
      const zo = c * k;
      for (let j = 0; j < k; j++) z[zo + j] += dv * y[yo + j];
    }
  }
  return { y: Float32Array.from(y), z: Float32Array.from(z) };
}
