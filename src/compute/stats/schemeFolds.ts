import type { StorageType } from '../../format/storage';
import { countsGptq } from './gptqStats.cpu';
import { countsScaled } from './scaledStats.cpu';

/**
 * Whether the CPU twin counts this scheme's codes instead of decoding them (scaledStats.cpu.ts,
 * gptqStats.cpu.ts): a slice then needs no room for its float32 values, and may hold as many
 * units as its bytes allow. The kernels still check each slice and decode where they do not apply.
 */
export function schemeFoldsUndecoded(storage: Exclude<StorageType, { kind: 'dtype' }>, topK: number): boolean {
  if (storage.kind !== 'scheme' || topK > 0) return false;
  return countsScaled(storage) || countsGptq(storage);
}
