import { DTYPE_INFO, type DType } from '../../format/dtypes';
import type { StorageType } from '../../format/storage';
import { partFloats, partInts } from '../dequant/partValues';

type Scheme = Extract<StorageType, { kind: 'scheme' }>;

/**
 * What the health scan checks in a quantized weight's own numbers, beyond its values:
 *  - `nanScales`: scales that are NaN or ±Inf (every value they multiply is lost);
 *  - `zeroScales`: scales of 0 (their group decodes to zeros, whatever its codes);
 *  - `e8m0Min`, `e8m0Max`: MXFP4 exponents at the ends of E8M0, 2^-127 and 2^127, which a
 *    quantizer writes only for an all-zero or an overflowing group (0xFF, NaN, is a NaN scale);
 *  - `codesOutOfRange`: indices that point outside what they index (GPTQ's g_idx outside
 *    [0, groups)), which the decoder would read out of bounds.
 */
export interface SchemeChecks {
  nanScales: number;
  zeroScales: number;
  e8m0Min: number;
  e8m0Max: number;
  codesOutOfRange: number;
}

export function noSchemeChecks(): SchemeChecks {
  return { nanScales: 0, zeroScales: 0, e8m0Min: 0, e8m0Max: 0, codesOutOfRange: 0 };
}

export function addSchemeChecks(into: SchemeChecks, c: SchemeChecks): void {
  into.nanScales += c.nanScales;
  into.zeroScales += c.zeroScales;
  into.e8m0Min += c.e8m0Min;
  into.e8m0Max += c.e8m0Max;
  into.codesOutOfRange += c.codesOutOfRange;
}

function floatScales(c: SchemeChecks, bytes: Uint8Array, dtype: string): void {
  const v = partFloats(bytes, dtype);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x - x !== 0) c.nanScales++;
    else if (x === 0) c.zeroScales++;
  }
}

/**
 * The checks of one slice of a scheme tensor: `parts` as its decoder receives them (data
 * first), `counted[k]` false for a part that every slice receives whole (counted once, on the
 * tensor's first slice, by the caller's choice). The data part itself is never read here: its
 * NaN codes are NaN values, which the statistics count.
 */
export function schemeChecks(s: Scheme, parts: readonly Uint8Array[], counted: readonly boolean[]): SchemeChecks {
  const c = noSchemeChecks();
  const p = s.params ?? {};
  const part = (k: number): Uint8Array | undefined => (counted[k] ? parts[k] : undefined);
  const str = (key: string): string => (typeof p[key] === 'string' ? (p[key] as string) : '');
  switch (s.scheme) {
    case 'mxfp4': {
      const e = part(1);
      for (let i = 0; e && i < e.length; i++) {
        if (e[i] === 0xff) c.nanScales++;
        else if (e[i] === 0) c.e8m0Min++;
        else if (e[i] === 0xfe) c.e8m0Max++;
      }
      break;
    }
    case 'nvfp4': {
      const scales = part(1);
      if (scales) floatScales(c, scales, 'F8_E4M3');
      const global = part(2);
      if (global) floatScales(c, global, str('globalDtype'));
      break;
    }
    case 'gptq':
    case 'awq': {
      const scales = part(2);
      if (scales) floatScales(c, scales, str('scaleDtype'));
      const gIdx = part(3);
      // scales is [groups, rows]: its byte length over one row of scales.
      const groups = Math.floor((parts[2]?.length ?? 0) / ((DTYPE_INFO[str('scaleDtype') as DType]?.bits ?? 16) / 8) / Number(p.rows));
      if (gIdx) for (const g of partInts(gIdx, str('gIdxDtype'))) if (!(g >= 0 && g < groups)) c.codesOutOfRange++;
      break;
    }
    default: {
      // fp8-tensor/channel/group/block, int8-scaled, int-packed: the scale is part 1.
      const scales = part(1);
      if (scales) floatScales(c, scales, str('scaleDtype'));
    }
  }
  return c;
}

/** One finding of the health scan in a quantized weight's scales or indices. */
export interface SchemeFinding {
  readonly tensor: string;
  readonly scheme: string;
  readonly check: 'nan-scales' | 'zero-scales' | 'e8m0-min' | 'e8m0-max' | 'codes-out-of-range';
  readonly count: number;
  readonly message: string;
}

const MESSAGES: Record<keyof SchemeChecks, [SchemeFinding['check'], string]> = {
  nanScales: ['nan-scales', 'scales are NaN or ±Inf'],
  zeroScales: ['zero-scales', 'scales are 0'],
  e8m0Min: ['e8m0-min', 'E8M0 scales are 2^-127, the format\'s smallest'],
  e8m0Max: ['e8m0-max', 'E8M0 scales are 2^127, the format\'s largest'],
  codesOutOfRange: ['codes-out-of-range', 'group indices (g_idx) lie outside the groups'],
};

/** The findings of one tensor's checks, in a fixed order. */
export function schemeFindings(tensor: string, scheme: string, c: SchemeChecks): SchemeFinding[] {
  const out: SchemeFinding[] = [];
  for (const key of Object.keys(MESSAGES) as (keyof SchemeChecks)[]) {
    if (c[key] === 0) continue;
    const [check, text] = MESSAGES[key];
    out.push({ tensor, scheme, check, count: c[key], message: `${c[key]} ${text}` });
  }
  return out;
}
