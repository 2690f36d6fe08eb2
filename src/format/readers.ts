import { ggufReader } from './gguf/ggufModel';
import { imatrixReader } from './imatrixModel';
import type { Model, SourceOpener } from './model';
import { looksLikeTorchPath } from './pickle/torch';
import { openTorchModel } from './pickle/torchModel';
import { openSafetensorsModel } from './safetensorsModel';

/**
 * A file format, as the model layer sees it: something that turns a path into a
 * `Model` (files, metadata, logical tensors with their storage and byte ranges).
 * Nothing above src/format asks which reader opened a model.
 */
export interface ModelReader {
  /** For messages: `safetensors`, `gguf` … */
  readonly name: string;
  /** Whether this reader opens `path` (by its name: an extension, an index file, a folder). */
  claims(path: string): boolean;
  open(path: string, opener: SourceOpener): Promise<Model>;
}

/** Single files, sharded index.json models and folders holding either. */
export const safetensorsReader: ModelReader = {
  name: 'safetensors',
  // The fallback: it also opens folders, and names what a folder holds when it is none of its own.
  claims: () => true,
  open: (path, opener) => openSafetensorsModel(path, opener),
};

/** A PyTorch checkpoint file (.pt, .pth, .ckpt, pytorch_model*.bin), read without executing it. */
export const torchReader: ModelReader = {
  name: 'pytorch',
  claims: (path) => looksLikeTorchPath(path),
  open: (path, opener) => openTorchModel(path, opener),
};

/**
 * Every format, most specific first: the first reader that claims a path opens it.
 * A new format adds its reader here, ahead of the safetensors fallback.
 */
export const READERS: readonly ModelReader[] = [ggufReader, imatrixReader, torchReader, safetensorsReader];
