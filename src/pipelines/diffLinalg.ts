/**
 * The small dense linear algebra of the rank estimate, in f64 on the host:
 * a seeded Gaussian start, column orthonormalization and a symmetric
 * eigensolver for the k × k Ritz matrix (k ≈ 72, so O(k³) is nothing), with
 * its eigenvectors when the truncated SVD wants the singular vectors.
 */

/** mulberry32: a tiny seeded generator, so that every run sketches with the same Ω. */
function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A `rows × cols` row-major matrix of standard normals (Box–Muller). */
export function gaussianMatrix(rows: number, cols: number, seed: number): Float64Array {
  const rnd = mulberry32(seed);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < out.length; i += 2) {
    const u = 1 - rnd();
    const v = rnd();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * Orthonormal columns spanning those of `m` (`rows × k`, row-major), by modified
 * Gram–Schmidt applied twice (once is not enough in floating point when the
 * columns are nearly dependent, which power iteration makes them). Columns that
 * vanish against the earlier ones become zero and contribute no Ritz value.
 */
export function orthonormalizeColumns(m: Float64Array, rows: number, k: number): Float64Array {
  const q = Float64Array.from(m);
  const norms0 = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let r = 0; r < rows; r++) s += q[r * k + j] ** 2;
    norms0[j] = Math.sqrt(s);
  }
  for (let j = 0; j < k; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        let dot = 0;
        for (let r = 0; r < rows; r++) dot += q[r * k + i] * q[r * k + j];
        if (dot === 0) continue;
        for (let r = 0; r < rows; r++) q[r * k + j] -= dot * q[r * k + i];
      }
    }
    let s = 0;
    for (let r = 0; r < rows; r++) s += q[r * k + j] ** 2;
    const norm = Math.sqrt(s);
    // Below this fraction of its original length the column is numerical noise, not a new direction.
    const scale = norm > 1e-10 * norms0[j] && norm > 0 ? 1 / norm : 0;
    for (let r = 0; r < rows; r++) q[r * k + j] *= scale;
  }
  return q;
}

/** Eigenvalues of a symmetric `n × n` row-major matrix (in no particular order). */
export function eigenSymmetric(m: Float64Array, n: number): number[] {
  return Array.from(jacobi(m, n, false).a.filter((_, i) => i % (n + 1) === 0));
}

/**
 * Eigenvalues (largest first) and eigenvectors of a symmetric `n × n` row-major
 * matrix: column j of `vectors` (n × n, row-major) belongs to `values[j]`.
 */
export function eigenSymmetricVectors(m: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const { a, v } = jacobi(m, n, true);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y] - a[x * n + x]);
  const values = Float64Array.from(order, (i) => a[i * n + i]);
  const vectors = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let j = 0; j < n; j++) vectors[r * n + j] = v![r * n + order[j]];
  return { values, vectors };
}

/** Cyclic Jacobi rotations; with `withVectors`, V accumulates them (A = V·diag·Vᵀ). */
function jacobi(m: Float64Array, n: number, withVectors: boolean): { a: Float64Array; v?: Float64Array } {
  const a = Float64Array.from(m);
  const v = withVectors ? new Float64Array(n * n) : undefined;
  if (v) for (let i = 0; i < n; i++) v[i * n + i] = 1;
  // Jacobi converges quadratically; 100 sweeps is far beyond what a 100 × 100 matrix needs.
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    }
    // Off-diagonal mass negligible next to the diagonal's at f64 precision.
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) rotate(a, v, n, p, q);
  }
  return { a, v };
}

/** One Jacobi rotation zeroing a[p][q] (and a[q][p]). */
function rotate(a: Float64Array, v: Float64Array | undefined, n: number, p: number, q: number): void {
  const apq = a[p * n + q];
  if (apq === 0) return;
  const app = a[p * n + p];
  const aqq = a[q * n + q];
  const theta = (aqq - app) / (2 * apq);
  const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
  const c = 1 / Math.sqrt(t * t + 1);
  const s = t * c;
  for (let k = 0; k < n; k++) {
    const akp = a[k * n + p];
    const akq = a[k * n + q];
    a[k * n + p] = c * akp - s * akq;
    a[k * n + q] = s * akp + c * akq;
  }
  for (let k = 0; k < n; k++) {
    const apk = a[p * n + k];
    const aqk = a[q * n + k];
    a[p * n + k] = c * apk - s * aqk;
    a[q * n + k] = s * apk + c * aqk;
  }
  if (!v) return;
  for (let k = 0; k < n; k++) {
    const vkp = v[k * n + p];
    const vkq = v[k * n + q];
    v[k * n + p] = c * vkp - s * vkq;
    v[k * n + q] = s * vkp + c * vkq;
  }
}
