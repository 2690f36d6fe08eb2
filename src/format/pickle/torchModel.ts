import type { DType } from '../dtypes';
import { FormatError } from '../errors';
import type { ChunkOptions, Model, ModelFile, SourceOpener, TensorInfo } from '../model';
import { SourceModel } from '../reader';
import type { ByteSource } from '../source';
import { elementBytes, layoutOf, verdictOf, viewExtent, type CheckpointLayout, type NamedTensor, type Verdict } from './layout';
import { readTorchCheckpoint, type StorageLocation, type TorchCheckpoint } from './torch';
import type { PyTensor, TorchDType } from './values';

/**
 * A PyTorch checkpoint as a `Model`: each tensor is a lazy view of its storage, read in
 * place from the file. Contiguous tensors are byte ranges like safetensors tensors;
 * a strided view (a transpose saved as such) is gathered when read.
 */

/** A strided view is gathered from its storage span in one read; above this it is refused. */
const MAX_STRIDED_SPAN = 512 * 2 ** 20;

const TO_DTYPE: Partial<Record<TorchDType, DType>> = {
  F64: 'F64', F32: 'F32', F16: 'F16', BF16: 'BF16', I64: 'I64', I32: 'I32', I16: 'I16', I8: 'I8', U8: 'U8', BOOL: 'BOOL',
  C64: 'C64', U16: 'U16', U32: 'U32', U64: 'U64', F8_E4M3: 'F8_E4M3', F8_E5M2: 'F8_E5M2',
  F8_E4M3FNUZ: 'F8_E4M3FNUZ', F8_E5M2FNUZ: 'F8_E5M2FNUZ', F8_E8M0: 'F8_E8M0',
};

export interface TorchModelInfo {
  readonly container: TorchCheckpoint['container'];
  readonly verdict: Verdict;
  readonly layout: CheckpointLayout;
  /** Names that share a storage view with an earlier tensor: alias → kept name. */
  readonly aliases: ReadonlyMap<string, string>;
  /** Lines worth showing: aliases, skipped tensors, container notes. */
  readonly notes: readonly string[];
}

interface Strided {
  readonly view: PyTensor;
  readonly storage: StorageLocation;
}

export class TorchModel implements Model {
  private readonly inner: SourceModel;
  private readonly byName = new Map<string, TensorInfo>();
  private gathered?: { name: string; bytes: Uint8Array };

  constructor(
    readonly path: string,
    readonly files: readonly ModelFile[],
    readonly tensors: readonly TensorInfo[],
    private readonly strided: ReadonlyMap<string, Strided>,
    private readonly source: ByteSource,
    readonly torch: TorchModelInfo,
  ) {
    this.inner = new SourceModel(path, files, tensors.filter((t) => !strided.has(t.name)), [source]);
    for (const t of tensors) this.byName.set(t.name, t);
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.files[0].metadata;
  }

  get safety(): { clean: boolean; text: string; findings: string[] } {
    const v = this.torch.verdict;
    const findings = v.findings.map((f) => `${f.severity === 'dangerous' ? 'dangerous' : 'unknown'}: ${f.module}.${f.name} (${f.entry ? `${f.entry}, ` : ''}byte ${f.offset}${f.nested ? ', nested pickle' : ''})`);
    return { clean: v.clean, text: v.text, findings };
  }

  get notes(): readonly string[] {
    const kind = this.torch.container === 'zip' ? 'PyTorch zip checkpoint' : this.torch.container === 'legacy' ? 'PyTorch legacy checkpoint' : 'plain pickle';
    return [`${kind}, read without executing it`, ...this.torch.notes];
  }

  tensor(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  async read(t: TensorInfo, offset: number, into: Uint8Array): Promise<void> {
    const s = this.strided.get(t.name);
    if (!s) return this.inner.read(t, offset, into);
    const all = await this.gather(t, s);
    if (offset < 0 || offset + into.length > all.length) throw new RangeError(`bytes ${offset}..${offset + into.length} are outside tensor '${t.name}'`);
    into.set(all.subarray(offset, offset + into.length));
  }

  async *chunks(t: TensorInfo, opts: ChunkOptions = {}): AsyncGenerator<Uint8Array> {
    const s = this.strided.get(t.name);
    if (!s) {
      yield* this.inner.chunks(t, opts);
      return;
    }
    const all = await this.gather(t, s);
    const eb = elementBytes(s.view);
    const want = opts.chunkBytes ?? 8 << 20;
    const size = Math.max(eb, want - (want % eb));
    for (let pos = 0; pos < all.length; pos += size) {
      opts.signal?.throwIfAborted();
      yield all.subarray(pos, Math.min(all.length, pos + size));
    }
  }

  async close(): Promise<void> {
    this.gathered = undefined;
    await this.inner.close();
  }

  /** Reads the storage span a view touches once, then copies its elements out in row-major order. */
  private async gather(t: TensorInfo, s: Strided): Promise<Uint8Array> {
    if (this.gathered?.name === t.name) return this.gathered.bytes;
    const v = s.view;
    const eb = elementBytes(v);
    const spanBytes = (viewExtent(v) - v.storageOffset) * eb;
    if (spanBytes > MAX_STRIDED_SPAN) {
      throw new FormatError('unsupported', `a strided view spanning ${spanBytes} bytes of its storage is above the ${MAX_STRIDED_SPAN}-byte limit`, this.path, t.name);
    }
    const span = new Uint8Array(spanBytes);
    const n = await this.source.read(s.storage.offset + v.storageOffset * eb, span);
    if (n !== spanBytes) throw new FormatError('file_changed', 'the file ended inside a storage; it changed since it was opened', this.path, t.name);
    const out = new Uint8Array(t.byteLength);
    const idx = new Array<number>(v.shape.length).fill(0);
    const rank = v.shape.length;
    for (let e = 0, src = 0; e < t.numel; e++) {
      out.set(span.subarray(src * eb, src * eb + eb), e * eb);
      // Odometer over the shape, last axis fastest: add the stride, carry into outer axes.
      for (let d = rank - 1; d >= 0; d--) {
        if (++idx[d] < v.shape[d]) {
          src += v.stride[d];
          break;
        }
        src -= (v.shape[d] - 1) * v.stride[d];
        idx[d] = 0;
      }
    }
    this.gathered = { name: t.name, bytes: out };
    return out;
  }
}

function sameView(a: PyTensor, b: PyTensor): boolean {
  return (
    a.storage.key === b.storage.key && a.dtype === b.dtype && a.storageOffset === b.storageOffset &&
    a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i] && a.stride[i] === b.stride[i])
  );
}

function describe(ckpt: TorchCheckpoint, path: string) {
  const layout = layoutOf(ckpt.root);
  const aliases = new Map<string, string>();
  const notes: string[] = [...ckpt.notes];
  const kept: NamedTensor[] = [];
  const firstByKey = new Map<string, NamedTensor[]>();
  for (const nt of layout.tensors) {
    const same = (firstByKey.get(nt.tensor.storage.key) ?? []).find((k) => sameView(k.tensor, nt.tensor));
    if (same) {
      aliases.set(nt.name, same.name);
      notes.push(`'${nt.name}' is the same tensor as '${same.name}' (shared storage); it is kept once`);
      continue;
    }
    if (!TO_DTYPE[nt.tensor.dtype]) {
      notes.push(`'${nt.name}' has dtype ${nt.tensor.dtype}, which safetensors cannot hold; it is left out`);
      continue;
    }
    firstByKey.set(nt.tensor.storage.key, [...(firstByKey.get(nt.tensor.storage.key) ?? []), nt]);
    kept.push(nt);
  }
  if (layout.root) notes.push(`the model's tensors are under '${layout.root}'`);
  for (const o of layout.other) notes.push(`other entry ${o}`);
  if (layout.otherTensors) notes.push(`${layout.otherTensors} tensors outside the model (optimizer state and the like) are not shown`);
  if (ckpt.container === 'pickle' && layout.tensors.length > 0) {
    throw new FormatError('unsupported', 'a plain pickle whose tensors name storages outside any torch container', path);
  }
  return { layout, aliases, notes, kept };
}

/** Opens a .pt/.pth/.ckpt/.bin checkpoint as a model. Nothing in it is executed. */
export async function openTorchModel(path: string, opener: SourceOpener, openedAs = path): Promise<TorchModel> {
  const source = await opener.open(path);
  try {
    const ckpt = await readTorchCheckpoint(source);
    const { layout, aliases, notes, kept } = describe(ckpt, path);
    const tensors: TensorInfo[] = [];
    const strided = new Map<string, Strided>();
    for (const nt of kept) {
      const v = nt.tensor;
      const loc = ckpt.storages.get(v.storage.key);
      if (!loc) throw new FormatError('truncated', `storage '${v.storage.key}' has no data in the file`, path, nt.name);
      const eb = elementBytes(v);
      const numel = v.shape.reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(numel * eb) || viewExtent(v) * eb > loc.byteLength) {
        throw new FormatError('size_mismatch', `its view reaches past the end of storage '${v.storage.key}' (${loc.byteLength} bytes)`, path, nt.name);
      }
      const info: TensorInfo = { name: nt.name, dtype: TO_DTYPE[v.dtype] as DType, shape: v.shape, numel, file: 0, byteOffset: loc.offset + v.storageOffset * eb, byteLength: numel * eb };
      if (!nt.contiguous) strided.set(nt.name, { view: v, storage: loc });
      tensors.push(info);
    }
    const files: ModelFile[] = [{ path, bytes: source.size, headerBytes: 0, metadata: { format: 'pt' }, mtimeMs: source.mtimeMs }];
    const info: TorchModelInfo = { container: ckpt.container, verdict: verdictOf(ckpt), layout, aliases, notes };
    return new TorchModel(openedAs, files, tensors, strided, source, info);
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}
