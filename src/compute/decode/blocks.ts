import { GGML_TYPES } from '../../format/gguf/types';
import type { StorageType } from '../../format/storage';
import { QUANT_DECODERS } from '../dequant/decoders';
import { dequantize } from '../dequant/dequant.cpu';

/**
 * Decoders of block and scheme storages to float32, by storage name (a ggml type such
 * as `Q4_0`, a scheme such as `fp8-block`). Each is the CPU side of the decode kernel
 * for its storage; the decode kernel looks it up here in the worker, so a decoder
 * must be registered in this table (not at run time) to be found there.
 *
 * To add one: write `name.cpu.ts` (and, when it pays, `name.wgsl` + `name.gpu.ts`),
 * then one line below. Inputs are whole units (blocks), in order, as the chunks of
 * `Model.chunks` and `chunkElementsOf` deliver them.
 */
export interface StorageDecoder {
  /** Decodes whole units of `bytes` (one buffer per part, data first) into `out`. */
  cpu(parts: readonly Uint8Array[], out: Float32Array, storage: Exclude<StorageType, { kind: 'dtype' }>): void;
}

// Every ggml type by its name (GGUF's plain number types reach the decoder as dtypes, so only blocks
// come here), and the quantized-safetensors schemes by theirs.
const GGML_DECODERS = Object.fromEntries([...GGML_TYPES.values()].map((t): [string, StorageDecoder] => [t.name, { cpu: (parts, out) => void dequantize(t.name, parts[0], out) }]));

export const STORAGE_DECODERS: Readonly<Record<string, StorageDecoder>> = { ...GGML_DECODERS, ...QUANT_DECODERS };

/** The decoder of a block or scheme storage; throws, naming it, when there is none. */
export function storageDecoder(s: Exclude<StorageType, { kind: 'dtype' }>): StorageDecoder {
  const name = s.kind === 'blocks' ? s.type : s.scheme;
  const d = STORAGE_DECODERS[name];
  if (!d) throw new Error(`decode: no decoder for the ${s.kind === 'blocks' ? 'block type' : 'scheme'} ${name}`);
  return d;
}
