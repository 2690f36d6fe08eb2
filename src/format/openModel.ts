import type { Model, SourceOpener } from './model';
import { HttpOpener, isRemotePath } from './httpOpener';
import { READERS } from './readers';
import { nodeOpener } from './safetensorsModel';

export * from './safetensorsModel';

/**
 * Opens what the user pointed at (a file, an index, a folder) with the first
 * reader that claims it (see readers.ts). Only headers are read.
 */
export async function openModel(path: string, opener: SourceOpener = nodeOpener): Promise<Model> {
  // An `https://` or `hf://` path with the default opener is read over HTTP (HF_TOKEN from the
  // environment); callers with their own token pass an HttpOpener.
  if (opener === nodeOpener && isRemotePath(path)) opener = new HttpOpener();
  const reader = READERS.find((r) => r.claims(path))!;
  return reader.open(path, opener);
}
