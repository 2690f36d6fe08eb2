// The arithmetic of one tensor pair's diff, from its chunks' reductions to its row
// in the report, and the report's aggregation by block and by module kind.
import { DIFF_DTYPES, type DiffDType } from '../compute/diff/decodeChunk';
import type { DiffReduceResult } from '../compute/diff/diffReduce';
import { throwIfCancelled } from '../core/job';
import { DTYPE_INFO, type DType } from '../format/dtypes';
import { typeNameOf, type Model, type TensorInfo } from '../format/model';
import type { GroupDiff, TensorDiff } from './diffTypes';

// 8 MiB per side: large enough that a read and a worker round trip cost little
// per byte, small enough that the chunks in flight stay far below the 300 MB budget.
export const DEFAULT_CHUNK_BYTES = 8 << 20;
// Chunk pairs alive at once, per worker: one computing, one queued, so a worker
// never waits for the reader. With 8 MiB chunks and two workers: 4 × 16 MiB.
export const IN_FLIGHT_PER_WORKER = 2;

/** Running totals of one tensor pair; chunk results arrive in any order. */
export class Accum {
  sumA2 = 0;
  sumB2 = 0;
  dot = 0;
  sumD2 = 0;
  sumAbsD = 0;
  maxAbs = 0;
  maxIndex = -1;
  nDiff = 0;
  add(r: DiffReduceResult, elementOffset: number): void {
    this.sumA2 += r.sumA2;
    this.sumB2 += r.sumB2;
    this.dot += r.dot;
    this.sumD2 += r.sumD2;
    this.sumAbsD += r.sumAbsD;
    this.nDiff += r.nDiff;
    if (r.maxIndex >= 0) {
      const idx = elementOffset + r.maxIndex;
      if (r.maxAbs > this.maxAbs || (r.maxAbs === this.maxAbs && (this.maxIndex < 0 || idx < this.maxIndex))) {
        this.maxAbs = r.maxAbs;
        this.maxIndex = idx;
      }
    }
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function unravel(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = index % shape[d];
    index = Math.floor(index / shape[d]);
  }
  return out;
}

export function kernelDType(d: string): DiffDType | undefined {
  return (DIFF_DTYPES as readonly string[]).includes(d) ? (d as DiffDType) : undefined;
}

/** The block index (`layers.N`, `h.N`, `blocks.N`) a tensor belongs to, if any. */
export function blockOf(name: string): string | undefined {
  const m = /(?:^|\.)(layers|layer|h|blocks|block)\.(\d+)(?:\.|$)/.exec(name);
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** The module kind: the leaf module's name (`q_proj`, `down_proj`), every norm folded into `norm`. */
export function moduleKindOf(name: string): string {
  const parts = name.split('.');
  if (parts.length > 1 && /^(weight|bias|scale|g|b)$/.test(parts[parts.length - 1])) parts.pop();
  const leaf = parts[parts.length - 1] ?? name;
  if (/norm|^ln_?\w*$/i.test(leaf)) return 'norm';
  return leaf;
}

// The order of localeCompare(y, 'en', { numeric: true }), from one collator: localeCompare with
// options sets one up per call, some 70 times slower per comparison (seconds to sort 10,000 blocks).
const GROUP_ORDER = new Intl.Collator('en', { numeric: true });

export function aggregate(tensors: readonly TensorDiff[], keyOf: (t: TensorDiff) => string | undefined): GroupDiff[] {
  const groups = new Map<string, TensorDiff[]>();
  for (const t of tensors) {
    const k = keyOf(t);
    if (k === undefined) continue;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(t);
  }
  const out: GroupDiff[] = [];
  for (const [group, ts] of groups) {
    const elements = ts.reduce((s, t) => s + t.numel, 0);
    const changedElements = ts.reduce((s, t) => s + t.changedElements, 0);
    const rel = ts.map((t) => t.relL2 ?? 0);
    out.push({
      group,
      tensors: ts.length,
      changedTensors: ts.filter((t) => !t.identical).length,
      elements,
      changedElements,
      changedFraction: elements > 0 ? changedElements / elements : 0,
      sumSqDiff: ts.reduce((s, t) => s + t.absL2 * t.absL2, 0),
      meanRelL2: elements > 0 ? ts.reduce((s, t, i) => s + rel[i] * t.numel, 0) / elements : 0,
      maxRelL2: Math.max(0, ...rel),
    });
  }
  // Blocks in numeric order (layers.2 before layers.10), module kinds alphabetically.
  return out.sort((x, y) => GROUP_ORDER.compare(x.group, y.group));
}

/** The fields that name the pair (B's name and type only where they differ from A's); every result opens with them. */
function pairFields(a: TensorInfo, b: TensorInfo): Pick<TensorDiff, 'name' | 'nameB' | 'dtype' | 'dtypeB' | 'shape' | 'numel'> {
  return {
    name: a.name,
    nameB: b.name !== a.name ? b.name : undefined,
    dtype: typeNameOf(a),
    dtypeB: typeNameOf(b) !== typeNameOf(a) ? typeNameOf(b) : undefined,
    shape: a.shape,
    numel: a.numel,
  };
}

export function identicalResult(a: TensorInfo, b: TensorInfo): TensorDiff {
  return {
    ...pairFields(a, b),
    identical: true,
    relL2: 0,
    absL2: 0,
    cosine: 1,
    maxAbsDiff: 0,
    maxAbsIndex: null,
    meanAbsDiff: 0,
    changedFraction: 0,
    changedElements: 0,
  };
}

export function finishTensor(a: TensorInfo, b: TensorInfo, s: Accum): TensorDiff {
  const normA = Math.sqrt(s.sumA2);
  const normB = Math.sqrt(s.sumB2);
  const absL2 = Math.sqrt(s.sumD2);
  const cosine = normA > 0 && normB > 0 ? Math.max(-1, Math.min(1, s.dot / (normA * normB))) : null;
  return {
    ...pairFields(a, b),
    identical: false,
    relL2: normA > 0 ? absL2 / normA : null,
    absL2,
    snrDb: normA > 0 && absL2 > 0 ? 20 * Math.log10(normA / absL2) : null,
    normA,
    normB,
    cosine,
    maxAbsDiff: s.maxAbs,
    maxAbsIndex: s.maxIndex >= 0 ? unravel(s.maxIndex, a.shape) : null,
    meanAbsDiff: a.numel > 0 ? s.sumAbsD / a.numel : 0,
    changedFraction: a.numel > 0 ? s.nDiff / a.numel : 0,
    changedElements: s.nDiff,
    note: normA > 0 ? undefined : 'A is all zeros: relL2 is undefined, absL2 = ‖b − a‖ is reported instead',
  };
}

/** Sizes a chunk to whole elements (whole bytes for sub-byte dtypes: 8 elements always end on one). */
export function chunkElements(dtype: DType, chunkBytes: number): number {
  const bits = DTYPE_INFO[dtype].bits;
  return Math.max(8, Math.floor((chunkBytes * 8) / bits / 8) * 8);
}

/** Elements of `width` bytes whose bytes differ. */
export function countDifferingElements(a: Uint8Array, b: Uint8Array, width: number): number {
  let n = 0;
  for (let i = 0; i < a.length; i += width) {
    for (let j = 0; j < width; j++) {
      if (a[i + j] !== b[i + j]) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** For C64: identical or not, and how many elements differ. */
export async function compareBytesOnly(
  a: Model,
  b: Model,
  ta: TensorInfo,
  tb: TensorInfo,
  chunkBytes: number,
  onRead: (n: number) => void,
  signal?: AbortSignal,
): Promise<TensorDiff> {
  const width = DTYPE_INFO[ta.dtype].bits / 8;
  let nDiff = 0;
  const len = ta.byteLength;
  const ba = new Uint8Array(Math.min(chunkBytes, len));
  const bb = new Uint8Array(Math.min(chunkBytes, len));
  for (let off = 0; off < len; off += chunkBytes) {
    throwIfCancelled(signal);
    const n = Math.min(chunkBytes, len - off);
    const xa = ba.subarray(0, n);
    const xb = bb.subarray(0, n);
    await Promise.all([a.read(ta, off, xa), b.read(tb, off, xb)]);
    onRead(2 * n);
    nDiff += countDifferingElements(xa, xb, width);
  }
  if (nDiff === 0) return identicalResult(ta, tb);
  return {
    ...identicalResult(ta, tb),
    identical: false,
    relL2: null,
    cosine: null,
    changedElements: nDiff,
    changedFraction: nDiff / Math.max(1, ta.numel),
    note: `${ta.dtype} is compared byte for byte only`,
  };
}
