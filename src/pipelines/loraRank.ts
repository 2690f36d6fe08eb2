// Which rank a LoRA module keeps: a fixed rank, or the smallest that holds a share
// of ‖Δ‖²_F, from the singular values the truncated SVD found.

export interface RankChoice {
  readonly rank: number;
  /** Share of ‖Δ‖²_F that the kept rank holds: Σ_{i<rank} σᵢ² / ‖Δ‖²_F. */
  readonly energy: number;
  /** With an energy target the allowed rank misses: the rank that would reach it. */
  readonly rankNeeded?: number;
  /** `rankNeeded` is a lower bound (the target lies beyond the computed singular values). */
  readonly rankNeededAtLeast?: boolean;
}

// Energies are sums of f64 squares: a share this close to the target reaches it.
const ENERGY_SLACK = 1e-12;

/**
 * `sigma`: singular values, largest first; `frob2`: ‖Δ‖²_F; `cap`: the largest rank
 * allowed; `fullRank`: min(out, in). Without `target` the rank is `cap`.
 */
export function rankForEnergy(sigma: ArrayLike<number>, frob2: number, cap: number, target: number | undefined, fullRank: number, exact = false): RankChoice {
  const n = Math.min(sigma.length, fullRank);
  const cum = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) cum[i + 1] = cum[i] + sigma[i] * sigma[i];
  const share = (r: number) => (frob2 > 0 ? Math.min(1, cum[Math.min(r, n)] / frob2) : 1);
  const top = Math.max(1, Math.min(cap, n));
  if (target === undefined) return { rank: top, energy: share(top) };
  for (let r = 1; r <= top; r++) if (share(r) >= target - ENERGY_SLACK) return { rank: r, energy: share(r) };
  for (let r = top + 1; r <= n; r++) if (share(r) >= target - ENERGY_SLACK) return { rank: top, energy: share(top), rankNeeded: r };
  if (exact || n >= fullRank) return { rank: top, energy: share(top), rankNeeded: fullRank };
  // Beyond the computed values each further one holds at most the last one's σ²: a lower bound.
  const last = sigma[n - 1] ** 2;
  const more = last > 0 ? Math.ceil(((target - share(n)) * frob2) / last) : fullRank;
  return { rank: top, energy: share(top), rankNeeded: Math.min(fullRank, n + more), rankNeededAtLeast: true };
}
