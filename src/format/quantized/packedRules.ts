import type { TensorInfo } from '../model';
import { elementBytes, logicalTensor, type PartOf } from './logical';
import type { RuleContext, RuleResult } from './recognize';

/** The bit widths packed into int32 words that compressed-tensors, GPTQ and AWQ write. */
const PACKED_BITS = [4, 8, 2];

/**
 * NVFP4: compressed-tensors `X.weight_packed` U8 + `X.weight_scale` E4M3 + `X.weight_global_scale`
 * (the reciprocal), or ModelOpt `X.weight` U8 + `X.weight_scale` E4M3 + `X.weight_scale_2`.
 */
export function nvfp4Rule(t: TensorInfo, cx: RuleContext): RuleResult | undefined {
  if (t.dtype !== 'U8') return undefined;
  const ct = t.name.endsWith('.weight_packed');
  if (!ct && !t.name.endsWith('.weight')) return undefined;
  const stem = t.name.slice(0, t.name.lastIndexOf('.'));
  const scale = cx.byName.get(`${stem}.weight_scale`);
  const global = cx.byName.get(ct ? `${stem}.weight_global_scale` : `${stem}.weight_scale_2`);
  if (!scale || !global || scale.dtype !== 'F8_E4M3') return undefined;
  const groupSize = 16; // NVFP4's definition: one E4M3 scale per 16 values.
  if (t.shape.length !== 2) return { raw: `NVFP4 data of ${t.shape.length} dimensions is not read yet` };
  const [rows, half] = t.shape;
  const cols = half * 2;
  if (cols % groupSize !== 0 || scale.shape.length !== 2 || scale.shape[0] !== rows || scale.shape[1] !== cols / groupSize || global.numel !== 1 || global.dtype !== 'F32') {
    return { raw: `packed [${t.shape}], scale [${scale.shape}] and global [${global.shape}] are not NVFP4's [rows, cols/2], [rows, cols/16] and one float32` };
  }
  const parts: PartOf[] = [
    { role: ct ? 'weight_packed' : 'weight', t, unitBytes: half },
    { role: 'scale', t: scale, unitBytes: cols / groupSize },
    { role: ct ? 'global_scale' : 'scale_2', t: global, unitBytes: 0 },
  ];
  const params = { cols, groupSize, global: ct ? 'reciprocal' : 'multiplier', globalDtype: global.dtype };
  return { logical: logicalTensor(`${stem}.weight`, [rows, cols], 'nvfp4', parts, cols, params), used: parts.map((p) => p.t.name) };
}

/** The bit width that packs `cols` values into `words` int32s: the config's when it fits. */
function bitsFor(cols: number, words: number, fromConfig: number | undefined): number | undefined {
  if (fromConfig && Math.ceil(cols / (32 / fromConfig)) === words) return fromConfig;
  return PACKED_BITS.find((b) => Math.ceil(cols / (32 / b)) === words);
}

/** compressed-tensors `pack-quantized`: `X.weight_packed` I32 + `X.weight_scale` (+ zero point, `X.weight_shape`). */
export async function packedRule(t: TensorInfo, cx: RuleContext): Promise<RuleResult | undefined> {
  if (!t.name.endsWith('.weight_packed') || t.dtype !== 'I32') return undefined;
  const stem = t.name.slice(0, -'.weight_packed'.length);
  const scale = cx.byName.get(`${stem}.weight_scale`);
  if (!scale) return { raw: `${stem}.weight_scale is missing` };
  const shapeT = cx.byName.get(`${stem}.weight_shape`);
  const zero = cx.byName.get(`${stem}.weight_zero_point`);
  if (t.shape.length !== 2) return { raw: `packed weight [${t.shape}] is not 2-d` };
  const [rows, words] = t.shape;
  let cols: number;
  let note: string | undefined;
  if (shapeT && shapeT.numel === 2 && ['I64', 'I32'].includes(shapeT.dtype)) {
    const s = await cx.ints(shapeT);
    if (s[0] !== rows || !(s[1] > 0)) return { raw: `${shapeT.name} [${s}] does not match the packed rows ${rows}` };
    cols = s[1];
  } else {
    const b = cx.config?.bits ?? 4;
    cols = words * (32 / b);
    note = `${t.name}: no weight_shape; ${cols} columns assumed from ${b}-bit packing`;
  }
  const bits = bitsFor(cols, words, cx.config?.bits);
  if (!bits) return { raw: `${words} int32 words per row fit no bit width for ${cols} columns` };
  if (cx.config?.bits && cx.config.bits !== bits) note = `${t.name}: config.json says ${cx.config.bits} bits, the tensors ${bits}; read as ${bits}`;
  if (scale.shape.length !== 2 || scale.shape[0] !== rows) return { raw: `scale [${scale.shape}] is not [rows, groups]` };
  const groups = scale.shape[1];
  const groupSize = groups === 1 ? cols : cx.config?.groupSize && Math.ceil(cols / cx.config.groupSize) === groups ? cx.config.groupSize : Math.ceil(cols / groups);
  if (Math.ceil(cols / groupSize) !== groups) return { raw: `scale [${scale.shape}] fits no group size of ${cols} columns` };
  const per = 32 / bits;
  if (zero && (zero.dtype !== 'I32' || zero.shape.length !== 2 || zero.shape[0] !== Math.ceil(rows / per) || zero.shape[1] !== groups)) {
    return { raw: `zero point [${zero.shape}] ${zero.dtype} is not packed int32 [⌈rows/${per}⌉, groups]` };
  }
  const unitRows = zero ? per : 1;
  const parts: PartOf[] = [
    { role: 'weight_packed', t, unitBytes: unitRows * words * 4 },
    { role: 'scale', t: scale, unitBytes: unitRows * groups * elementBytes(scale) },
  ];
  if (zero) parts.push({ role: 'zero_point', t: zero, unitBytes: groups * 4 });
  const params = { bits, cols, groupSize, scaleDtype: scale.dtype };
  const used = [...parts.map((p) => p.t.name), ...(shapeT ? [shapeT.name] : [])];
  return { logical: logicalTensor(`${stem}.weight`, [rows, cols], 'int-packed', parts, unitRows * cols, params), used, note };
}

/** GPTQ (`qweight` packs input rows) or AWQ (`qweight` packs output columns), told apart by shapes. */
export function gptqRule(t: TensorInfo, cx: RuleContext): RuleResult | undefined {
  if (!t.name.endsWith('.qweight') || t.dtype !== 'I32') return undefined;
  const stem = t.name.slice(0, -'.qweight'.length);
  const qzeros = cx.byName.get(`${stem}.qzeros`);
  const scales = cx.byName.get(`${stem}.scales`);
  if (!qzeros || !scales) return { raw: `${stem}.qzeros or ${stem}.scales is missing` };
  const gIdx = cx.byName.get(`${stem}.g_idx`);
  if (t.shape.length !== 2 || qzeros.shape.length !== 2 || scales.shape.length !== 2 || qzeros.dtype !== 'I32') return { raw: 'qweight, qzeros and scales are not 2-d int32, int32 and float' };
  const [groups, out] = scales.shape;
  const awq = t.shape[1] * 8 === out && t.shape[1] !== out;
  const per = awq ? 8 : out / qzeros.shape[1];
  if (!Number.isInteger(per) || ![8, 4].includes(per) || qzeros.shape[0] !== groups) return { raw: `qzeros [${qzeros.shape}] and scales [${scales.shape}] fit no bit width` };
  const bits = 32 / per;
  const cols = awq ? t.shape[0] : t.shape[0] * per;
  if (!awq && t.shape[1] !== out) return { raw: `qweight [${t.shape}] is neither GPTQ's [in/${per}, out] nor AWQ's [in, out/8]` };
  if (gIdx && (gIdx.numel !== cols || !['I32', 'I64'].includes(gIdx.dtype))) return { raw: `g_idx [${gIdx.shape}] does not have ${cols} entries` };
  const method = cx.config?.method;
  let note: string | undefined;
  if ((method === 'awq' && !awq) || (method === 'gptq' && awq)) note = `${t.name}: config.json says ${method}, its shapes are ${awq ? 'AWQ' : 'GPTQ'}'s; read as ${awq ? 'AWQ' : 'GPTQ'}`;
  const parts: PartOf[] = [
    { role: 'qweight', t, unitBytes: t.byteLength },
    { role: 'qzeros', t: qzeros, unitBytes: 0 },
    { role: 'scales', t: scales, unitBytes: 0 },
  ];
  if (gIdx && !awq) parts.push({ role: 'g_idx', t: gIdx, unitBytes: 0 });
  const groupSize = Math.ceil(cols / groups);
  const zeroOffset = awq || cx.config?.checkpointFormat === 'gptq_v2' ? 0 : 1;
  const params = { order: awq ? 'awq' : 'gptq', bits, rows: out, cols, groupSize, zeroOffset, scaleDtype: scales.dtype, gIdxDtype: gIdx?.dtype ?? '' };
  const used = [...parts.map((p) => p.t.name), ...(gIdx ? [gIdx.name] : [])];
  return { logical: logicalTensor(`${stem}.weight`, [out, cols], awq ? 'awq' : 'gptq', parts, out * cols, params), used, note };
}
