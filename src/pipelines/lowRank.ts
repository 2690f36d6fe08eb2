/**
 * Float64 dense algebra for low-rank factors, small enough to hold: thin Householder QR
 * of a tall matrix and a one-sided Jacobi SVD of the small core. Used to truncate
 * Σ Bᵢ·Aᵢ without forming the out×in product: QR of the stacked B columns and of the
 * stacked A rows leaves an R×R core, whose SVD gives the best rank-k factors.
 * Matrices are row-major Float64Arrays with explicit dimensions.
 */

export interface Mat {
  readonly rows: number;
  readonly cols: number;
  readonly v: Float64Array;
}

export function mat(rows: number, cols: number, v: Float64Array = new Float64Array(rows * cols)): Mat {
  return { rows, cols, v };
}

export function transpose(a: Mat): Mat {
  const t = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.v[j * a.rows + i] = a.v[i * a.cols + j];
  return t;
}

export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const c = mat(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const x = a.v[i * a.cols + k];
      if (x === 0) continue;
      const bo = k * b.cols;
      const co = i * b.cols;
      for (let j = 0; j < b.cols; j++) c.v[co + j] += x * b.v[bo + j];
    }
  }
  return c;
}

/** Thin QR by Householder reflections: a = q·r with q m×k orthonormal columns, r k×n, k = min(m, n). */
export function qr(a: Mat): { q: Mat; r: Mat } {
  const m = a.rows;
  const n = a.cols;
  const k = Math.min(m, n);
  // Work column-major: reflections touch columns, which are then contiguous.
  const w = transpose(a).v;
  const vs: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    const col = w.subarray(j * m, (j + 1) * m);
    let norm = 0;
    for (let i = j; i < m; i++) norm += col[i] * col[i];
    norm = Math.sqrt(norm);
    const v = new Float64Array(m);
    if (norm === 0) {
      vs.push(v);
      continue;
    }
    const alpha = col[j] >= 0 ? -norm : norm;
    for (let i = j; i < m; i++) v[i] = col[i];
    v[j] -= alpha;
    let vv = 0;
    for (let i = j; i < m; i++) vv += v[i] * v[i];
    if (vv > 0) {
      for (let c = j; c < n; c++) {
        const x = w.subarray(c * m, (c + 1) * m);
        let d = 0;
        for (let i = j; i < m; i++) d += v[i] * x[i];
        const f = (2 * d) / vv;
        for (let i = j; i < m; i++) x[i] -= f * v[i];
      }
      for (let i = j; i < m; i++) v[i] /= Math.sqrt(vv);
    }
    vs.push(v);
  }
  const r = mat(k, n);
  for (let i = 0; i < k; i++) for (let j = i; j < n; j++) r.v[i * n + j] = w[j * m + i];
  // q = H₀…H_{k−1} applied to the first k columns of the identity.
  const qc = new Float64Array(k * m);
  for (let c = 0; c < k; c++) {
    const x = qc.subarray(c * m, (c + 1) * m);
    x[c] = 1;
    for (let j = k - 1; j >= 0; j--) {
      const v = vs[j];
      let d = 0;
      for (let i = j; i < m; i++) d += v[i] * x[i];
      for (let i = j; i < m; i++) x[i] -= 2 * d * v[i];
    }
  }
  return { q: transpose(mat(k, m, qc)), r };
}

// Jacobi sweeps before giving up; each sweep squares the off-diagonal error near convergence, so ~10 suffice.
const MAX_SWEEPS = 60;

/** SVD by one-sided Jacobi: a = u·diag(s)·vᵀ, s descending; u m×n, v n×n (columns with s = 0 are zero in u). */
export function svd(a: Mat): { u: Mat; s: Float64Array; v: Mat } {
  const m = a.rows;
  const n = a.cols;
  const w = transpose(a).v; // column-major: column j at j*m
  const vv = new Float64Array(n * n); // column-major too
  for (let j = 0; j < n; j++) vv[j * n + j] = 1;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let al = 0;
        let be = 0;
        let ga = 0;
        for (let i = 0; i < m; i++) {
          const x = w[p * m + i];
          const y = w[q * m + i];
          al += x * x;
          be += y * y;
          ga += x * y;
        }
        if (ga === 0 || Math.abs(ga) <= Number.EPSILON * Math.sqrt(al * be)) continue;
        rotated = true;
        const zeta = (be - al) / (2 * ga);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = w[p * m + i];
          const y = w[q * m + i];
          w[p * m + i] = c * x - s * y;
          w[q * m + i] = s * x + c * y;
        }
        for (let i = 0; i < n; i++) {
          const x = vv[p * n + i];
          const y = vv[q * n + i];
          vv[p * n + i] = c * x - s * y;
          vv[q * n + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += w[j * m + i] ** 2;
    return Math.sqrt(s);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const u = mat(m, n);
  const v = mat(n, n);
  const s = new Float64Array(n);
  order.forEach((j, c) => {
    s[c] = norms[j];
    for (let i = 0; i < m; i++) u.v[i * n + c] = norms[j] > 0 ? w[j * m + i] / norms[j] : 0;
    for (let i = 0; i < n; i++) v.v[i * n + c] = vv[j * n + i];
  });
  return { u, s, v };
}

/**
 * The best rank-`k` factors of B·A (B out×R, A R×in) without forming it: B = Q_B·R_B,
 * Aᵀ = Q_A·R_A, B·A = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, and the SVD of the small core. Returns
 * up = Q_B·U_k·S_k (out×k) and down = V_kᵀ·Q_Aᵀ (k×in), as PEFT's svd combination splits them.
 */
export function truncatedProduct(b: Mat, a: Mat, k: number): { up: Mat; down: Mat } {
  const qb = qr(b);
  const qa = qr(transpose(a));
  const core = matmul(qb.r, transpose(qa.r));
  const { u, s, v } = svd(core);
  const kk = Math.min(k, s.length);
  const us = mat(u.rows, k);
  for (let i = 0; i < u.rows; i++) for (let c = 0; c < kk; c++) us.v[i * k + c] = u.v[i * u.cols + c] * s[c];
  const vk = mat(v.rows, k);
  for (let i = 0; i < v.rows; i++) for (let c = 0; c < kk; c++) vk.v[i * k + c] = v.v[i * v.cols + c];
  return { up: matmul(qb.q, us), down: transpose(matmul(qa.q, vk)) };
}
