import type { DType } from '../dtypes';
import type { Model, ModelFile, SourceOpener, TensorInfo } from '../model';
import { SourceModel } from '../reader';
import type { ModelReader } from '../readers';
import type { StorageType } from '../storage';
import { openGguf, type GgufModel, type GgufModelTensor } from './split';
import { architectureLine, metadataStrings, specialTokens, tokenizerLine, type SpecialToken } from './summary';
import type { GgmlTypeInfo, GgmlTypeName } from './types';

/**
 * GGUF through the model layer: a file or a split set opens as a `Model` whose tensors carry
 * their ggml type as storage (plain dtypes for F32, F16, BF16, F64 and the integers; a block
 * storage for every quantized type), a row-major shape (GGUF's `ne` reversed) and the byte
 * range of their data. The metadata becomes strings, long arrays described rather than listed.
 */

// ggml's plain number types and the dtype each one is, element for element.
const PLAIN: Partial<Record<GgmlTypeName, DType>> = { F32: 'F32', F16: 'F16', BF16: 'BF16', F64: 'F64', I8: 'I8', I16: 'I16', I32: 'I32', I64: 'I64' };

// One storage object per block type: a 50,000-tensor model allocates none of its own.
const BLOCKS = new Map<GgmlTypeName, StorageType>();

function blockStorage(type: GgmlTypeInfo): StorageType {
  let s = BLOCKS.get(type.name);
  if (!s) BLOCKS.set(type.name, (s = Object.freeze({ kind: 'blocks', type: type.name, blockElements: type.blockSize, blockBytes: type.typeSize })));
  return s;
}

// Literals of one shape each (no spreads): 50,000 of them are built at every open.
function tensorInfo(t: GgufModelTensor): TensorInfo {
  const plain = PLAIN[t.type.name];
  if (plain) return { name: t.name, dtype: plain, shape: t.shape, numel: t.elements, file: t.part, byteOffset: t.fileOffset, byteLength: t.byteLength };
  return { name: t.name, dtype: 'U8', shape: t.shape, numel: t.elements, file: t.part, byteOffset: t.fileOffset, byteLength: t.byteLength, storage: blockStorage(t.type) };
}

/**
 * A GGUF model as the model layer sees it, which keeps the file's typed metadata (long arrays
 * still lazy) and its special tokens for the front ends that show more than strings (the viewer).
 */
export class GgufSourceModel extends SourceModel {
  constructor(
    path: string,
    files: readonly ModelFile[],
    tensors: readonly TensorInfo[],
    notes: readonly string[],
    readonly gguf: GgufModel,
    readonly special: readonly SpecialToken[],
  ) {
    super(path, files, tensors, gguf.parts.map((p) => p.source), notes);
  }
}

/** The GGUF behind a model opened from a `.gguf` file; undefined for every other model. */
export function ggufOf(m: Model): GgufSourceModel | undefined {
  return m instanceof GgufSourceModel ? m : undefined;
}

/** Opens a `.gguf` file, or the whole split set a `NAME-0000k-of-0000n.gguf` part belongs to. */
export async function openGgufModel(path: string, opener: SourceOpener): Promise<Model> {
  const g = await openGguf(path, (p) => opener.open(p));
  try {
    const files: ModelFile[] = g.parts.map((p) => ({
      path: p.source.name,
      bytes: p.source.size,
      // Everything before the data section: header, metadata, tensor infos and padding.
      headerBytes: p.dataOffset,
      metadata: metadataStrings(p.metadata),
      mtimeMs: p.source.mtimeMs,
    }));
    const special = await specialTokens(g.parts[0]);
    const notes = [`GGUF v${g.parts[0].version}`, architectureLine(g.metadata), tokenizerLine(g.metadata, special)].filter((n): n is string => n !== undefined);
    return new GgufSourceModel(path, files, g.tensors.map(tensorInfo), notes, g, special);
  } catch (e) {
    await g.close().catch(() => undefined);
    throw e;
  }
}

export const ggufReader: ModelReader = {
  name: 'gguf',
  claims: (path) => /\.gguf$/i.test(path),
  open: openGgufModel,
};
