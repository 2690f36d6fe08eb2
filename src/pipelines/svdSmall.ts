/**
 * The exact SVD of a small square matrix by one-sided Jacobi (Hestenes): plane
 * rotations make the columns of W = C·V mutually orthogonal, then σⱼ = ‖wⱼ‖ and
 * uⱼ = wⱼ / σⱼ. Accurate to f64 rounding in every singular value, small ones
 * included (it never forms CᵀC). Used on the r × r core of a LoRA product.
 */
export function svdSmall(c: Float64Array, n: number): { u: Float64Array; sigma: Float64Array; v: Float64Array } {
  const w = Float64Array.from(c);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  // One-sided Jacobi converges quadratically; 60 sweeps is far beyond what rank ≤ 1024 needs.
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) rotated = orthogonalise(w, v, n, p, q) || rotated;
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[i * n + j] ** 2;
    return Math.sqrt(s);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const u = new Float64Array(n * n);
  const vs = new Float64Array(n * n);
  const sigma = Float64Array.from(order, (j) => norms[j]);
  order.forEach((j, col) => {
    const inv = norms[j] > 0 ? 1 / norms[j] : 0;
    for (let i = 0; i < n; i++) {
      u[i * n + col] = w[i * n + j] * inv;
      vs[i * n + col] = v[i * n + j];
    }
  });
  return { u, sigma, v: vs };
}

/** Rotates columns p and q of W (and V) to be orthogonal; false when they already are, to f64 precision. */
function orthogonalise(w: Float64Array, v: Float64Array, n: number, p: number, q: number): boolean {
  let alpha = 0;
  let beta = 0;
  let gamma = 0;
  for (let i = 0; i < n; i++) {
    const wp = w[i * n + p];
    const wq = w[i * n + q];
    alpha += wp * wp;
    beta += wq * wq;
    gamma += wp * wq;
  }
  // Orthogonal to within f64 rounding of the columns' norms: no rotation would change anything.
  if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) return false;
  const zeta = (beta - alpha) / (2 * gamma);
  const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
  const cs = 1 / Math.sqrt(1 + t * t);
  const sn = cs * t;
  for (const m of [w, v]) {
    for (let i = 0; i < n; i++) {
      const mp = m[i * n + p];
      const mq = m[i * n + q];
      m[i * n + p] = cs * mp - sn * mq;
      m[i * n + q] = sn * mp + cs * mq;
    }
  }
  return true;
}
