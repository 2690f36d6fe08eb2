import { storageDecoder } from './blocks';
import { elementCount, type DecodeArgs } from './decode';
import { isPatternDType, patternAt, patternTable, patternBits } from './patterns';

/** The CPU twin: one table lookup per element (F32 is copied, F64 rounded to nearest f32). */
export function decodeCpu(args: DecodeArgs): Float32Array {
  const { dtype, bytes } = args;
  const n = elementCount(args);
  const out = new Float32Array(n);
  if (args.storage && args.storage.kind !== 'dtype') {
    storageDecoder(args.storage).cpu([bytes, ...(args.more ?? [])], out, args.storage);
    return out;
  }
  if (dtype === 'F32') {
    out.set(new Float32Array(bytes.slice(0, n * 4).buffer));
    return out;
  }
  if (dtype === 'F64') {
    out.set(new Float64Array(bytes.slice(0, n * 8).buffer));
    return out;
  }
  if (!isPatternDType(dtype)) throw new Error(`decode: ${dtype} is not a float dtype`);
  const table = patternTable(dtype);
  const bits = patternBits(dtype);
  if (bits === 16) {
    const u16 = new Uint16Array(bytes.slice(0, n * 2).buffer);
    for (let i = 0; i < n; i++) out[i] = table[u16[i]];
  } else if (bits === 8) {
    for (let i = 0; i < n; i++) out[i] = table[bytes[i]];
  } else {
    for (let i = 0; i < n; i++) out[i] = table[patternAt(dtype, bytes, i)];
  }
  return out;
}
