import type { TensorInfo } from '../model';
import type { QuantConfig } from './config';
import { elementBytes, logicalTensor, numelOf, type PartOf } from './logical';

/** What a rule makes of a data tensor: a logical tensor and the stored tensors it takes, or why not. */
export type RuleResult = { readonly logical: TensorInfo; readonly used: readonly string[]; readonly note?: string } | { readonly raw: string };

export interface RuleContext {
  readonly byName: ReadonlyMap<string, TensorInfo>;
  readonly config?: QuantConfig;
  /** The values of a small integer tensor (compressed-tensors' `weight_shape`), read on demand. */
  readonly ints: (t: TensorInfo) => Promise<number[]>;
}

// F8_E8M0: power-of-two block scales (UE8M0), which Transformers also accepts for `weight_scale_inv`.
const FLOAT_SCALES = new Set(['F32', 'F16', 'BF16', 'F8_E8M0']);
const FP8 = new Set(['F8_E4M3', 'F8_E5M2']);
// DeepSeek-V3 and Qwen FP8 checkpoints use 128 × 128 blocks; assumed when config.json is absent and the shapes allow it.
const COMMON_BLOCK = 128;

/** `a` rows split in blocks of `b`: how many. */
const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** The block edge that turns `n` into `count` blocks: the config's, else 128, else the smallest that fits. */
function blockEdge(n: number, count: number, fromConfig: number | undefined): { edge: number; disagrees: boolean } | undefined {
  if (fromConfig && cdiv(n, fromConfig) === count) return { edge: fromConfig, disagrees: false };
  const guess = cdiv(n, COMMON_BLOCK) === count ? COMMON_BLOCK : cdiv(n, count);
  if (cdiv(n, guess) !== count) return undefined;
  return { edge: guess, disagrees: fromConfig !== undefined };
}

/**
 * An FP8 or int8 weight with a scale per tensor, row, group or block (and an optional zero point):
 * `X.weight` + `X.weight_scale_inv` (DeepSeek, Qwen FP8) or `X.weight_scale` (compressed-tensors).
 */
export function scaledRule(t: TensorInfo, cx: RuleContext): RuleResult | undefined {
  if (!t.name.endsWith('.weight') || !(FP8.has(t.dtype) || t.dtype === 'I8')) return undefined;
  const stem = t.name.slice(0, -'.weight'.length);
  const inv = cx.byName.get(`${stem}.weight_scale_inv`);
  const scale = inv ?? cx.byName.get(`${stem}.weight_scale`);
  if (!scale) return undefined;
  if (!FLOAT_SCALES.has(scale.dtype)) return { raw: `${scale.name} is ${scale.dtype}, not a float scale` };
  const zero = cx.byName.get(`${stem}.weight_zero_point`);
  const whole = scale.numel === 1;
  if (t.shape.length !== 2 && !whole) return { raw: `a ${t.shape.length}-d weight with a scale per row or block is not read yet` };
  const [rows, cols] = whole ? [numelOf(t.shape) / (t.shape.at(-1) ?? 1), t.shape.at(-1) ?? 1] : t.shape;
  const sShape = scale.shape.length === 1 ? [scale.shape[0], 1] : scale.shape;
  let kind: string;
  let bh = 1;
  let bw = cols;
  let note: string | undefined;
  if (whole) kind = 'tensor';
  else if (sShape.length === 2 && sShape[0] === rows && sShape[1] === 1) kind = 'channel';
  else if (sShape.length === 2 && sShape[0] === rows) {
    const e = blockEdge(cols, sShape[1], cx.config?.groupSize);
    if (!e) return { raw: `scale shape [${scale.shape}] fits no group size of ${cols} columns` };
    kind = 'group';
    bw = e.edge;
  } else if (sShape.length === 2) {
    const r = blockEdge(rows, sShape[0], cx.config?.blockSize?.[0]);
    const c = blockEdge(cols, sShape[1], cx.config?.blockSize?.[1]);
    if (!r || !c) return { raw: `scale shape [${scale.shape}] fits no block size of [${rows}, ${cols}]` };
    kind = 'block';
    bh = r.edge;
    bw = c.edge;
    if (r.disagrees || c.disagrees) note = `${t.name}: config.json's weight_block_size [${cx.config?.blockSize}] does not fit its scales [${scale.shape}]; read as ${bh}×${bw} blocks`;
  } else return { raw: `scale shape [${scale.shape}] is not per tensor, row, group or block` };
  if (zero && (zero.numel !== scale.numel || !['I8', 'I32', 'I64', 'U8'].includes(zero.dtype))) return { raw: `${zero.name} does not match its scale` };
  const scaleCols = whole ? 1 : sShape[1];
  const sb = elementBytes(scale);
  const parts: PartOf[] = [
    { role: 'weight', t, unitBytes: bh * cols },
    { role: inv ? 'scale_inv' : 'scale', t: scale, unitBytes: whole ? 0 : scaleCols * sb },
  ];
  if (zero) parts.push({ role: 'zero_point', t: zero, unitBytes: whole ? 0 : scaleCols * elementBytes(zero) });
  const scheme = t.dtype === 'I8' ? 'int8-scaled' : `fp8-${kind}`;
  const params = { data: t.dtype, cols, blockRows: bh, blockCols: bw, scaleCols, scaleDtype: scale.dtype, zeroDtype: zero?.dtype ?? '' };
  return { logical: logicalTensor(t.name, t.shape, scheme, parts, bh * cols, params), used: parts.map((p) => p.t.name), note };
}

/** gpt-oss MXFP4: `X_blocks` U8 [..., G, 16] and `X_scales` U8 [..., G] stand for `X` [..., G × 32]. */
export function mxfp4Rule(t: TensorInfo, cx: RuleContext): RuleResult | undefined {
  if (!t.name.endsWith('_blocks') || t.dtype !== 'U8') return undefined;
  const stem = t.name.slice(0, -'_blocks'.length);
  const scales = cx.byName.get(`${stem}_scales`);
  if (!scales) return undefined;
  const n = t.shape.length;
  if (n < 2 || t.shape[n - 1] !== 16 || scales.dtype !== 'U8' || scales.shape.length !== n - 1 || !scales.shape.every((d, i) => d === t.shape[i])) {
    return { raw: `blocks [${t.shape}] and scales [${scales.shape}] are not MXFP4's [..., G, 16] and [..., G]` };
  }
  const groups = t.shape[n - 2];
  // Experts ([E, rows, G, 16]) read as Transformers lays them out, [E, G × 32, rows]: one expert per unit.
  if (n === 4) {
    const [experts, rows] = t.shape;
    const parts: PartOf[] = [
      { role: 'blocks', t, unitBytes: rows * groups * 16 },
      { role: 'scales', t: scales, unitBytes: rows * groups },
    ];
    return { logical: logicalTensor(stem, [experts, groups * 32, rows], 'mxfp4', parts, rows * groups * 32, { rows, groups }), used: [t.name, scales.name] };
  }
  const shape = [...t.shape.slice(0, n - 2), groups * 32];
  const parts: PartOf[] = [
    { role: 'blocks', t, unitBytes: 16 },
    { role: 'scales', t: scales, unitBytes: 1 },
  ];
  return { logical: logicalTensor(stem, shape, 'mxfp4', parts, 32, {}), used: [t.name, scales.name] };
}
