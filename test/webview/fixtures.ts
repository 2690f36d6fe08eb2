/**
 * Generated protocol messages for the webview tests: a Llama-like module tree of
 * any size, statistics with known bins, a small heatmap. They are built here from
 * the protocol's types, independently of the host code that produces them in the
 * extension, so the page is tested against the protocol, not against our own host.
 */
import { tensorEntries, tensorTable, treeTable } from '../../src/shared/protocol';
import type { HeatmapReplyMessage, ScanRow, SummaryReplyMessage, TensorEntry, TensorStatsReplyMessage, TreeNodeData } from '../../src/shared/protocol';

const BLOCK = [
  ['self_attn', 'q_proj'],
  ['self_attn', 'k_proj'],
  ['self_attn', 'v_proj'],
  ['self_attn', 'o_proj'],
  ['mlp', 'gate_proj'],
  ['mlp', 'up_proj'],
  ['mlp', 'down_proj'],
  ['input_layernorm'],
  ['post_attention_layernorm'],
] as const;

export const HIDDEN = 64;
export const FF = 128;

function shapeOf(parts: readonly string[]): number[] {
  const last = parts[parts.length - 1]!;
  if (last.endsWith('layernorm')) return [HIDDEN];
  if (last === 'down_proj') return [HIDDEN, FF];
  if (last === 'gate_proj' || last === 'up_proj') return [FF, HIDDEN];
  return [HIDDEN, HIDDEN];
}

/** A summary with `blocks` decoder blocks (9 tensors each), embeddings, final norm, lm_head and one undecodable tensor. */
export function llamaSummary(blocks: number): SummaryReplyMessage {
  const tensors: TensorEntry[] = [];
  let offset = 8 + 1024;
  const add = (name: string, shape: number[], dtype = 'BF16', decodable = true): number => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const bytes = dtype === 'BF16' ? numel * 2 : numel;
    tensors.push({ name, dtype, shape, numel, file: 0, byteOffset: offset, byteLength: bytes, decodable });
    offset += bytes;
    return tensors.length - 1;
  };
  const leaf = (label: string, path: string, index: number): TreeNodeData => {
    const t = tensors[index]!;
    return { label, path, kind: 'tensor', tensor: index, tensors: 1, params: t.numel, bytes: t.byteLength };
  };
  const mod = (label: string, path: string, children: TreeNodeData[], kind: 'module' | 'run' = 'module'): TreeNodeData => ({
    label,
    path,
    kind,
    tensors: children.reduce((a, c) => a + c.tensors, 0),
    params: children.reduce((a, c) => a + c.params, 0),
    bytes: children.reduce((a, c) => a + c.bytes, 0),
    children,
  });

  const embed = add('model.embed_tokens.weight', [256, HIDDEN]);
  const layers: TreeNodeData[] = [];
  for (let b = 0; b < blocks; b++) {
    const groups = new Map<string, TreeNodeData[]>();
    const direct: TreeNodeData[] = [];
    for (const parts of BLOCK) {
      const path = `model.layers.${b}.${parts.join('.')}`;
      const i = add(`${path}.weight`, shapeOf(parts));
      const w = mod(parts[parts.length - 1]!, path, [leaf('weight', `${path}.weight`, i)]);
      if (parts.length === 2) {
        const g = groups.get(parts[0]) ?? [];
        g.push(w);
        groups.set(parts[0], g);
      } else direct.push(w);
    }
    const kids = [...[...groups].map(([g, ws]) => mod(g, `model.layers.${b}.${g}`, ws)), ...direct];
    layers.push(mod(String(b), `model.layers.${b}`, kids));
  }
  const norm = add('model.norm.weight', [HIDDEN]);
  const head = add('lm_head.weight', [256, HIDDEN]);
  const scales = add('extra.scales', [HIDDEN], 'F8_E8M0', false);
  const root = mod('', '', [
    mod('model', 'model', [
      mod('embed_tokens', 'model.embed_tokens', [leaf('weight', 'model.embed_tokens.weight', embed)]),
      mod(`layers ×${blocks}`, `model.layers.{0..${blocks - 1}}`, layers, 'run'),
      mod('norm', 'model.norm', [leaf('weight', 'model.norm.weight', norm)]),
    ]),
    mod('lm_head', 'lm_head', [leaf('weight', 'lm_head.weight', head)]),
    mod('extra', 'extra', [leaf('scales', 'extra.scales', scales)]),
  ]);
  const params = tensors.reduce((a, t) => a + t.numel, 0);
  const bytes = tensors.reduce((a, t) => a + t.byteLength, 0);
  return {
    type: 'summary',
    path: '/models/tiny-llama/model.safetensors',
    files: [{ path: '/models/tiny-llama/model.safetensors', bytes: offset, headerBytes: 1024 }],
    tensors: tensorTable(tensors),
    totals: {
      tensors: tensors.length,
      params,
      bytes,
      byDtype: [
        { dtype: 'BF16', tensors: tensors.length - 1, params: params - HIDDEN, bytes: bytes - HIDDEN },
        { dtype: 'F8_E8M0', tensors: 1, params: HIDDEN, bytes: HIDDEN },
      ],
    },
    memory: [
      { format: 'FP32', bytes: params * 4 },
      { format: 'BF16', bytes: params * 2 },
      { format: 'FP8', bytes: params },
      { format: 'Q8_0', bytes: Math.ceil((params / 32) * 34) },
      { format: 'Q4_0', bytes: Math.ceil((params / 32) * 18) },
    ],
    metadata: [
      ['format', 'pt'],
      ['note', '<b>not markup</b>'],
    ],
    tree: treeTable(root),
  };
}

export const BINS = 64;
export const LOG_BINS = 32;

/** Statistics with `BINS` non-empty bins (a bell shape) and a known top-k. */
export function statsReply(name: string, shape: readonly number[]): TensorStatsReplyMessage {
  const count = shape.reduce((a, b) => a * b, 1);
  const counts = new Float64Array(BINS);
  for (let i = 0; i < BINS; i++) counts[i] = 1 + Math.round(1000 * Math.exp(-(((i - BINS / 2) / 8) ** 2)));
  const logCounts = new Float64Array(LOG_BINS);
  for (let i = 0; i < LOG_BINS; i++) logCounts[i] = 1 + i * 3;
  return {
    type: 'tensorStats',
    backend: 'cpu',
    seconds: 0.012,
    stats: {
      name,
      count,
      finite: count - 3,
      nan: 1,
      posInf: 1,
      negInf: 1,
      zeros: 7,
      nearZero: 40,
      min: -0.25,
      max: 0.5,
      absMax: 70000,
      mean: 0.0012,
      std: 0.0213,
      outliers: 5,
      histogram: { min: -0.25, max: 0.5, counts },
      logHistogram: { min: -8, max: 0, counts: logCounts },
      topK: [
        { index: 1234, value: 70000 },
        { index: 7, value: -0.25 },
      ],
    },
  };
}

/** A 6×4 heatmap whose pixel values are 0, 10, 20, … and one non-finite cell. */
export function heatmapReply(name: string): HeatmapReplyMessage {
  const width = 6;
  const height = 4;
  const pixels = new Uint8Array(width * height).map((_, i) => Math.min(255, i * 10));
  pixels[width * height - 1] = 255;
  const nonFinite = new Uint8Array(width * height);
  nonFinite[1] = 1;
  return { type: 'heatmap', name, width, height, rows: 64, cols: 64, pixels, nonFinite, scale: 0.5 };
}

export function scanRows(s: SummaryReplyMessage): ScanRow[] {
  return tensorEntries(s.tensors).map((t, i) =>
    t.decodable
      ? {
          name: t.name,
          dtype: t.dtype,
          count: t.numel,
          std: 0.01 + (i % 17) * 0.001,
          absMax: i === 3 ? 1e6 : 0.1 + (i % 5) * 0.1,
          sparsity: i === 5 ? 1 : 0,
          outliers: i % 4,
          nonFinite: i === 2 ? 3 : 0,
          badges: [...(i === 2 ? (['non-finite'] as const) : []), ...(i === 5 ? (['all-zero'] as const) : []), ...(i === 3 ? (['f16-overflow'] as const) : [])],
        }
      : { name: t.name, dtype: t.dtype, count: t.numel, std: NaN, absMax: NaN, sparsity: NaN, outliers: 0, nonFinite: 0, badges: [], error: { code: 'unsupported', message: `dtype ${t.dtype} cannot be decoded` } },
  );
}
