/**
 * The viewer's view of quantized tensors: per tensor its scheme, bits per weight, group or
 * block size and parts (packed as columns), and for a quantized-safetensors model the header:
 * the schemes found, what config.json declares (method, bits, group, the modules it leaves
 * unquantized) and every place where the two disagree; the tensors win.
 */
import { partsOf, storageOf, type Model, type TensorInfo } from '../../format/model';
import type { StorageType } from '../../format/storage';
import { packQuantTable, type QuantEntry, type QuantHeader, type QuantTable } from '../../shared/quantizedColumns';

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

const K_QUANT = /^(Q[2-8]_K|IQ[1-4]_(XXS|XS|S|M|NL)|TQ[12]_0)$/;

function n(s: Scheme, key: string): number {
  const v = s.params?.[key];
  return typeof v === 'number' ? v : NaN;
}

/** How many values share one scale, as users name it. */
function groupOf(s: StorageType): string {
  if (s.kind === 'blocks') return K_QUANT.test(s.type) && s.blockElements === 256 ? `super-block ${s.blockElements}` : `block ${s.blockElements}`;
  if (s.kind !== 'scheme') return '';
  const cols = n(s, 'cols');
  switch (s.scheme) {
    case 'mxfp4':
      return 'block 32';
    case 'nvfp4':
      return `group ${n(s, 'groupSize')}`;
    case 'int-packed':
    case 'gptq':
    case 'awq': {
      const g = n(s, 'groupSize');
      const actOrder = s.scheme === 'gptq' && s.parts.includes('g_idx') ? ', act-order' : '';
      return (g >= cols ? 'per channel' : `group ${g}`) + actOrder;
    }
    default: {
      // FP8 and int8 with scales: per tensor, row, group or 2-D block.
      if (s.scheme === 'fp8-tensor' || s.partUnitBytes?.[1] === 0) return 'per tensor';
      const bh = n(s, 'blockRows');
      const bw = n(s, 'blockCols');
      if (bh > 1) return `${bh}×${bw} block`;
      return bw >= cols ? 'per channel' : `group ${bw}`;
    }
  }
}

/** One row per tensor stored as a block type or scheme; `tensors` are the rows of the summary's tensor table. */
export function quantEntriesOf(tensors: readonly TensorInfo[]): QuantEntry[] {
  const out: QuantEntry[] = [];
  tensors.forEach((t, i) => {
    const s = storageOf(t);
    if (s.kind === 'dtype') return;
    const parts = s.kind === 'scheme' ? partsOf(t) : [];
    const bytes = s.kind === 'scheme' ? parts.reduce((a, p) => a + p.byteLength, 0) : t.byteLength;
    out.push({
      tensor: i,
      scheme: s.kind === 'scheme' ? s.scheme : s.type,
      bitsPerWeight: t.numel > 0 ? (bytes * 8) / t.numel : 0,
      group: groupOf(s),
      parts: parts.map((p) => ({ role: p.role, file: p.file, byteOffset: p.byteOffset, byteLength: p.byteLength })),
    });
  });
  return out;
}

/** The module a tensor belongs to: its name without the last `.weight` (MXFP4's names have none). */
function moduleOf(name: string): string {
  return name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : name;
}

/** Whether an ignore entry names `module`, as whole dotted components (no pattern is run). */
function names(entry: string, module: string): boolean {
  return `.${module}.`.includes(`.${entry}.`);
}

// The schemes each declared method writes; a scheme outside its method's list is a disagreement.
// (GPTQ against AWQ, and packed bit widths, are noted by recognition itself, tensor by tensor.)
const METHOD_SCHEMES: Readonly<Record<string, readonly string[]>> = {
  fp8: ['fp8-tensor', 'fp8-channel', 'fp8-group', 'fp8-block'],
  mxfp4: ['mxfp4'],
};
// Disagreements listed one by one up to this many; the rest are counted in one line.
const MAX_LISTED = 20;

function disagreementsOf(model: Model, quantized: readonly TensorInfo[]): string[] {
  const d = model.quantization;
  const out = (model.notes ?? []).filter((x) => /config\.json('s| says)/.test(x));
  if (!d) return out;
  const plain = d.ignore.filter((e) => !e.startsWith('re:'));
  const ignoredButQuantized = quantized.filter((t) => plain.some((e) => names(e, moduleOf(t.name))));
  for (const t of ignoredButQuantized.slice(0, MAX_LISTED)) {
    out.push(`${t.name}: config.json's ${d.ignoreKey} lists it as unquantized, but it is stored as ${(storageOf(t) as Scheme).scheme}; shown as stored`);
  }
  if (ignoredButQuantized.length > MAX_LISTED) out.push(`… and ${ignoredButQuantized.length - MAX_LISTED} more tensors that config.json's ${d.ignoreKey} lists but that are stored quantized`);
  const allowed = d.method ? METHOD_SCHEMES[d.method] : undefined;
  const schemes = new Set(quantized.map((t) => (storageOf(t) as Scheme).scheme));
  const other = allowed ? [...schemes].filter((s) => !allowed.includes(s)) : [];
  if (other.length) out.push(`config.json says quant_method ${d.method}, but tensors are stored as ${other.join(', ')}; shown as stored`);
  if (d.bits !== undefined) {
    const bits = new Map<number, number>();
    for (const t of quantized.filter((x) => ['gptq', 'awq'].includes((storageOf(x) as Scheme).scheme))) {
      const b = (storageOf(t) as Scheme).params?.bits;
      if (typeof b === 'number' && b !== d.bits) bits.set(b, (bits.get(b) ?? 0) + 1);
    }
    for (const [b, k] of bits) out.push(`config.json says ${d.bits} bits, but ${k} tensor${k === 1 ? ' is' : 's are'} stored with ${b} bits; shown as stored`);
  }
  return out;
}

/** The header of a quantized-safetensors model; undefined for a model with neither scheme tensors nor a declaration. */
export function quantHeaderOf(model: Model): QuantHeader | undefined {
  const quantized = model.tensors.filter((t) => t.storage?.kind === 'scheme');
  const d = model.quantization;
  if (!d && quantized.length === 0) return undefined;
  const counts = new Map<string, number>();
  for (const t of quantized) {
    const s = (t.storage as Scheme).scheme;
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }
  return {
    schemes: [...counts].map(([scheme, tensors]) => ({ scheme, tensors })).sort((a, b) => b.tensors - a.tensors),
    ...(d?.method ? { method: d.method } : {}),
    ...(d?.format ? { format: d.format } : {}),
    ...(d?.bits !== undefined ? { bits: d.bits } : {}),
    ...(d?.group ? { group: d.group } : {}),
    ignore: d?.ignore ?? [],
    ...(d?.ignoreKey ? { ignoreKey: d.ignoreKey } : {}),
    disagreements: disagreementsOf(model, quantized),
  };
}

/** The summary's quantized fields for the tensors its table shows (all, or an outline's). */
export function quantizedSummary(model: Model, shown: readonly TensorInfo[]): { quantized?: QuantTable; quantHeader?: QuantHeader } {
  const entries = quantEntriesOf(shown);
  const header = quantHeaderOf(model);
  return { ...(entries.length ? { quantized: packQuantTable(entries) } : {}), ...(header ? { quantHeader: header } : {}) };
}
