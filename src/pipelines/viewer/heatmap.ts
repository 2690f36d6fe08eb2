/**
 * Downsamples a matrix to an image of at most `maxSize`×`maxSize` cells, each cell
 * keeping the largest |x| of the block it covers, so a single spike stays visible
 * however far the image is shrunk. Values arrive in row-major chunks (as streamed
 * from the file), so memory is the image, never the tensor.
 *
 * `computeHeatmap` streams a tensor's chunks from the file, decodes and feeds them.
 */
import { valueChunks } from '../../compute/decode/tensorValues';
import { FormatError } from '../../format/errors';
import type { Model, TensorInfo } from '../../format/model';
import { throwIfCancelled, type BackendChoice } from '../../core/job';
import { getBackend } from '../../compute/backend';
import { isViewable } from './summary';
import type { HeatmapResult } from './types';

/** Largest image side: a 512×512 canvas shows every cell at once on a normal screen, and the reply stays at 256 KiB. */
export const HEATMAP_MAX_SIZE = 512;

/** How a tensor's shape is read as a matrix: rank 1 is one row, rank > 2 folds the leading dims into rows. */
export function matrixShape(shape: readonly number[]): { rows: number; cols: number } {
  if (shape.length === 0) return { rows: 1, cols: 1 };
  const cols = shape[shape.length - 1]!;
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return { rows, cols };
}

export interface HeatmapImage {
  readonly width: number;
  readonly height: number;
  readonly rows: number;
  readonly cols: number;
  /** 0..255, 255 = `scale`. */
  readonly pixels: Uint8Array;
  /** 1 where the cell holds a NaN or ±Inf. */
  readonly nonFinite: Uint8Array;
  readonly scale: number;
}

export class HeatmapAccumulator {
  readonly width: number;
  readonly height: number;
  private readonly cells: Float64Array;
  private readonly bad: Uint8Array;
  /** Cell column of every matrix column, computed once (cols can be a 150k-wide vocab; 600 KB is fine). */
  private readonly colCell: Int32Array;
  private seen = 0;

  constructor(
    readonly rows: number,
    readonly cols: number,
    maxSize = HEATMAP_MAX_SIZE,
  ) {
    const cap = Math.max(1, Math.min(Math.floor(maxSize), HEATMAP_MAX_SIZE));
    this.width = Math.max(1, Math.min(cols, cap));
    this.height = Math.max(1, Math.min(rows, cap));
    this.cells = new Float64Array(this.width * this.height);
    this.bad = new Uint8Array(this.width * this.height);
    this.colCell = new Int32Array(cols);
    for (let c = 0; c < cols; c++) this.colCell[c] = Math.floor((c * this.width) / cols);
  }

  /** Number of elements consumed so far. */
  get count(): number {
    return this.seen;
  }

  /** Consumes the next `values.length` elements in row-major order. */
  push(values: ArrayLike<number>): void {
    const { cols, width, height, rows, cells, bad, colCell } = this;
    let e = this.seen;
    let i = 0;
    const n = values.length;
    while (i < n) {
      const r = Math.floor(e / cols);
      let c = e - r * cols;
      const rowBase = Math.floor((r * height) / rows) * width;
      const take = Math.min(n - i, cols - c);
      for (let k = 0; k < take; k++, c++, i++) {
        const v = values[i]!;
        const cell = rowBase + colCell[c]!;
        const a = Math.abs(v);
        if (a === Infinity || a !== a) bad[cell] = 1;
        else if (a > cells[cell]!) cells[cell] = a;
      }
      e += take;
    }
    this.seen = e;
  }

  image(): HeatmapImage {
    let scale = 0;
    for (const v of this.cells) if (v > scale) scale = v;
    const pixels = new Uint8Array(this.cells.length);
    if (scale > 0) for (let i = 0; i < pixels.length; i++) pixels[i] = Math.round((this.cells[i]! / scale) * 255);
    return { width: this.width, height: this.height, rows: this.rows, cols: this.cols, pixels, nonFinite: this.bad.slice(), scale };
  }
}


/**
 * Values binned at a time on the extension host: 2 MiB of float32, 512 K values, after which
 * the loop yields, so that its event loop is never held for long, even by a tensor whose
 * decoding unit is all of it (GPTQ, whose act-order indexes every row).
 */
const HEATMAP_CHUNK_BYTES = 2 << 20;
const HEATMAP_CHUNK_VALUES = HEATMAP_CHUNK_BYTES / 4;

/**
 * The tensor's heatmap. With `backend` (the viewer's), a block or scheme storage (a GGUF block
 * type, FP8 with block scales, GPTQ's whole act-order tensor …) is decoded by the decode kernel
 * in that backend's workers or on the GPU, and the calling thread only bins the values; without,
 * everything is decoded on the calling thread. A plain dtype is widened on the calling thread
 * either way, a chunk at a time: a table lookup per value, where a worker round trip per chunk
 * took about a third more CPU time for a 50 M-element BF16 tensor.
 */
export async function computeHeatmap(model: Model, t: TensorInfo, maxSize: number, signal?: AbortSignal, backend?: BackendChoice): Promise<HeatmapResult> {
  if (!isViewable(t.dtype)) throw new FormatError('unsupported', `a heatmap needs one value per element; ${t.dtype} has two`, model.path, t.name);
  const { rows, cols } = matrixShape(t.shape);
  const acc = new HeatmapAccumulator(rows, cols, Math.min(maxSize, HEATMAP_MAX_SIZE));
  const plain = !t.storage || t.storage.kind === 'dtype';
  const run = backend && !plain ? await getBackend(backend) : undefined;
  // Chunks of whole units: a block type by its blocks, a 128×128-block FP8 weight by 128-row bands.
  for await (const c of valueChunks(model, t, { chunkValues: HEATMAP_CHUNK_VALUES, backend: run, signal })) {
    for (let i = 0; i < c.values.length; i += HEATMAP_CHUNK_VALUES) {
      throwIfCancelled(signal);
      // A unit larger than a chunk arrives whole: it is binned a chunk at a time, with a turn of the loop between.
      if (i > 0) await new Promise((r) => setImmediate(r));
      acc.push(c.values.subarray(i, i + HEATMAP_CHUNK_VALUES));
    }
  }
  const img = acc.image();
  return { type: 'heatmap', name: t.name, ...img };
}
