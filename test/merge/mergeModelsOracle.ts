// Float64 references for the whole-model merge methods, written from mergekit's definitions
// (merge_methods/linear.py, generalized_task_arithmetic.py, sparsify.py, slerp.py, model_stock.py)
// on whole tensors with plain sorts: no chunking, no histograms, nothing shared with src/.

export type Arr = Float64Array;

export function linearRef(xs: Arr[], w: number[], normalize: boolean): Arr {
  const out = new Float64Array(xs[0].length);
  const sum = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    xs.forEach((x, j) => (s += w[j] * x[i]));
    out[i] = normalize ? s / sum : s;
  }
  return out;
}

/** The indices kept by an ascending sort of |Δ| as float32 (ties by index), ranks [lo, hi). */
function keptByRank(delta: Arr, lo: number, hi: number): Uint8Array {
  const mag = delta.map((d) => Math.fround(Math.abs(d)));
  const order = Array.from(mag.keys()).sort((a, b) => mag[a] - mag[b] || a - b);
  const keep = new Uint8Array(delta.length);
  for (let r = lo; r < hi; r++) keep[order[r]] = 1;
  return keep;
}

export function magnitudeRef(delta: Arr, density: number): Arr {
  if (density >= 1) return delta;
  const n = delta.length;
  const keep = keptByRank(delta, n - Math.floor(density * n), n);
  return delta.map((d, i) => (keep[i] ? d : 0));
}

export function outliersRef(delta: Arr, density: number, gamma: number): Arr {
  if (density >= 1) return delta;
  const n = delta.length;
  const target = Math.floor(n * density);
  let top = Math.floor(n * gamma);
  let bot = n - target - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  const keep = keptByRank(delta, bot, n - top);
  return delta.map((d, i) => (keep[i] ? d : 0));
}

export interface GtaRef {
  weights: number[];
  consensus: boolean;
  normalize: boolean;
  lambda?: number;
}

/** mergekit's generalized task arithmetic on already sparsified deltas. */
export function gtaRef(base: Arr, deltas: Arr[], o: GtaRef): Arr {
  const out = new Float64Array(base.length);
  for (let i = 0; i < out.length; i++) {
    const wd = deltas.map((d, j) => d[i] * o.weights[j]);
    let mixed: number;
    let divisor: number;
    if (o.consensus) {
      const major = wd.reduce((a, b) => a + b, 0) >= 0 ? 1 : -1;
      mixed = wd.filter((v) => Math.sign(v) === major).reduce((a, b) => a + b, 0);
      divisor = o.weights.filter((_, j) => Math.sign(wd[j]) === major).reduce((a, b) => a + b, 0);
      if (divisor === 0) divisor = 1;
    } else {
      mixed = wd.reduce((a, b) => a + b, 0);
      divisor = o.weights.reduce((a, b) => a + b, 0);
      if (Math.abs(divisor) < 1e-8) divisor = 1;
    }
    if (o.normalize) mixed /= divisor;
    out[i] = base[i] + mixed * (o.lambda ?? 1);
  }
  return out;
}

export function slerpRef(t: number, v0: Arr, v1: Arr): Arr {
  const norm = (v: Arr) => Math.sqrt(v.reduce((a, b) => a + b * b, 0));
  const n0 = norm(v0);
  const n1 = norm(v1);
  let dot = 0;
  for (let i = 0; i < v0.length; i++) dot += (v0[i] / (n0 > 1e-8 ? n0 : 1)) * (v1[i] / (n1 > 1e-8 ? n1 : 1));
  if (Math.abs(dot) > 0.9995) return v0.map((a, i) => (1 - t) * a + t * v1[i]);
  const th = Math.acos(dot);
  const s0 = Math.sin(th - th * t) / Math.sin(th);
  const s1 = Math.sin(th * t) / Math.sin(th);
  return v0.map((a, i) => s0 * a + s1 * v1[i]);
}

/** Model Stock over whole tensors (one angle; filter-wise: one per row of the last dimension). */
export function modelStockRef(w0: Arr, ws: Arr[], rowLen: number): Arr {
  const out = new Float64Array(w0.length);
  const N = ws.length;
  for (let r0 = 0; r0 < w0.length; r0 += rowLen) {
    const off = ws.map((w) => Array.from({ length: rowLen }, (_, k) => w[r0 + k] - w0[r0 + k]));
    const cos: number[] = [];
    for (let i = 0; i < N; i++) {
      for (let j = i + 1; j < N; j++) {
        const dot = off[i].reduce((a, v, k) => a + v * off[j][k], 0);
        const ni = Math.sqrt(off[i].reduce((a, v) => a + v * v, 0));
        const nj = Math.sqrt(off[j].reduce((a, v) => a + v * v, 0));
        cos.push(Math.min(1, Math.max(-1, dot / Math.max(ni * nj, 1e-6))));
      }
    }
    const c = cos.reduce((a, b) => a + b, 0) / cos.length;
    const t = (N * c) / (1 + (N - 1) * c);
    for (let k = 0; k < rowLen; k++) {
      const avg = ws.reduce((a, w) => a + w[r0 + k], 0) / N;
      out[r0 + k] = t * avg + (1 - t) * w0[r0 + k];
    }
  }
  return out;
}

/** mergekit's gradient: linear interpolation over the list at position t in [0, 1]. */
export function gradientRef(g: number[], t: number): number {
  const x = t * (g.length - 1);
  const i = Math.floor(x);
  const j = Math.min(g.length - 1, i + 1);
  return g[i] + (x - i) * (g[j] - g[i]);
}
