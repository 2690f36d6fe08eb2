import { FormatError } from '../format/errors';
import { typeBytes } from './ggufQuantStream';
import type { ChosenType } from './llamaFtype';

/**
 * `--target-bpw`: the per-tensor types that fit a bits-per-weight budget at the lowest
 * estimated error. Each tensor offers its candidate types with an estimated squared error
 * (importance-weighted when an imatrix is given); the plan is a Lagrangian greedy on the
 * lower convex hull of every tensor's (bits, error) points: upgrades are taken in order of
 * error removed per bit, and the plan is the longest prefix of that order that fits. A
 * larger budget takes a longer prefix of the same order, so its error is never higher.
 */

/** One candidate type of a tensor and its estimated error over the whole tensor. */
export interface BpwCandidate {
  readonly type: ChosenType;
  /** Σ w·(x − q(x))², scaled from the sample to the whole tensor (w = 1 without an imatrix). */
  readonly sse: number;
}

export interface BpwTensor {
  readonly name: string;
  readonly numel: number;
  /** Σ w·x² over the tensor (scaled like `sse`): the relative error is sse / signal. */
  readonly signal: number;
  /** The candidates; empty when the type is fixed (`fixed`). */
  readonly candidates: readonly BpwCandidate[];
  /** A type chosen outside the budget: a 1-D tensor, an override, an unusual row length. */
  readonly fixed?: ChosenType;
  /** Why it is fixed, for the plan. */
  readonly why?: string;
}

export interface BpwChoice {
  readonly name: string;
  readonly type: ChosenType;
  readonly numel: number;
  readonly bits: number;
  /** Estimated error of the chosen type; undefined for a fixed tensor. */
  readonly sse?: number;
  /** sse / signal. */
  readonly relError?: number;
  readonly why?: string;
}

export interface BpwPlan {
  readonly target: number;
  readonly choices: readonly BpwChoice[];
  readonly bits: number;
  readonly params: number;
  readonly bitsPerWeight: number;
  /** Σ sse over the planned tensors: what the plan minimizes. */
  readonly sse: number;
  /** Σ sse / Σ signal over the planned tensors. */
  readonly relError: number;
}

const bitsOf = (type: ChosenType, numel: number): number => typeBytes(type, numel) * 8;

interface Point {
  readonly type: ChosenType;
  readonly bits: number;
  readonly sse: number;
}

/** Gain of the step a → b: error removed per bit added. */
const gain = (a: Point, b: Point): number => (a.sse - b.sse) / (b.bits - a.bits);

/**
 * The lower convex hull of a tensor's candidates by bits: a type that costs more bits for no
 * less error is dropped, and so is one whose step gains more than the step before it (the
 * greedy would otherwise stop short of a better one).
 */
export function hullOf(t: BpwTensor): Point[] {
  const pts = t.candidates.map((c) => ({ type: c.type, bits: bitsOf(c.type, t.numel), sse: c.sse }));
  // Ties in bits: keep the lower error; ties in both: the first listed.
  pts.sort((a, b) => a.bits - b.bits || a.sse - b.sse);
  const hull: Point[] = [];
  for (const p of pts) {
    if (hull.length && (p.bits === hull[hull.length - 1].bits || p.sse >= hull[hull.length - 1].sse)) continue;
    while (hull.length >= 2 && gain(hull[hull.length - 2], hull[hull.length - 1]) <= gain(hull[hull.length - 1], p)) hull.pop();
    hull.push(p);
  }
  return hull;
}

interface Step {
  readonly tensor: number;
  readonly to: number;
  readonly gain: number;
  readonly bits: number;
}

/** Plans the types for `target` bits per weight over all of `tensors` (fixed ones included in the count). */
export function planBpw(tensors: readonly BpwTensor[], target: number, file?: string): BpwPlan {
  const params = tensors.reduce((s, t) => s + t.numel, 0);
  const budget = target * params;
  const hulls = tensors.map((t) => (t.fixed ? [] : hullOf(t)));
  let bits = 0;
  tensors.forEach((t, i) => {
    if (!t.fixed && hulls[i].length === 0) throw new FormatError('unsupported', 'no candidate type for --target-bpw', file, t.name);
    bits += t.fixed ? bitsOf(t.fixed, t.numel) : hulls[i][0].bits;
  });
  if (bits > budget) {
    throw new FormatError('unsupported', `--target-bpw ${target} is below the smallest plan, ${(bits / params).toFixed(3)} bits per weight (every tensor at its smallest type, 1-D tensors kept)`, file);
  }
  const steps: Step[] = [];
  hulls.forEach((h, i) => {
    for (let k = 1; k < h.length; k++) steps.push({ tensor: i, to: k, gain: gain(h[k - 1], h[k]), bits: h[k].bits - h[k - 1].bits });
  });
  // Per tensor the gains fall step by step (the hull is convex), so this order keeps each tensor's steps in sequence.
  steps.sort((a, b) => b.gain - a.gain || a.tensor - b.tensor || a.to - b.to);
  const at = hulls.map(() => 0);
  for (const s of steps) {
    if (bits + s.bits > budget) break;
    bits += s.bits;
    at[s.tensor] = s.to;
  }
  let sse = 0;
  let signal = 0;
  const choices = tensors.map((t, i): BpwChoice => {
    if (t.fixed) return { name: t.name, type: t.fixed, numel: t.numel, bits: bitsOf(t.fixed, t.numel), why: t.why };
    const p = hulls[i][at[i]];
    sse += p.sse;
    signal += t.signal;
    return { name: t.name, type: p.type, numel: t.numel, bits: p.bits, sse: p.sse, relError: t.signal > 0 ? p.sse / t.signal : 0 };
  });
  return { target, choices, bits, params, bitsPerWeight: params ? bits / params : 0, sse, relError: signal > 0 ? sse / signal : 0 };
}

/** The plan as the CLI prints it: one line per tensor, then the totals. */
export function planText(p: BpwPlan, escape: (s: string) => string): string {
  const width = Math.min(48, Math.max(6, ...p.choices.map((c) => c.name.length)));
  const lines = [`${'tensor'.padEnd(width)}  ${'type'.padEnd(6)}  ${'bits/w'.padStart(6)}  est. rel. error`];
  for (const c of p.choices) {
    const err = c.relError === undefined ? `kept (${c.why ?? 'fixed'})` : c.relError.toExponential(3);
    lines.push(`${escape(c.name).padEnd(width)}  ${c.type.toLowerCase().padEnd(6)}  ${((c.bits / c.numel) || 0).toFixed(3).padStart(6)}  ${err}`);
  }
  const mix = new Map<string, number>();
  for (const c of p.choices) mix.set(c.type, (mix.get(c.type) ?? 0) + 1);
  lines.push(
    `plan: ${p.bitsPerWeight.toFixed(4)} bits per weight (target ${p.target}), ${Math.ceil(p.bits / 8)} bytes of tensor data; ` +
      `estimated relative error ${p.relError.toExponential(3)}; ${[...mix].map(([t, n]) => `${n} ${t.toLowerCase()}`).join(', ')}`,
  );
  return lines.join('\n') + '\n';
}
