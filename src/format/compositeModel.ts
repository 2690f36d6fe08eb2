import { FormatError } from './errors';
import type { ChunkOptions, Model, ModelFile, TensorInfo } from './model';

/**
 * Several single-file models shown as one (the shards of a `pytorch_model.bin.index.json`):
 * tensors keep their own reader, and `file` indexes the composite's file list. Any format
 * whose shards open as models can be joined this way.
 */
export class CompositeModel implements Model {
  readonly files: readonly ModelFile[];
  readonly tensors: readonly TensorInfo[];
  private readonly owner = new Map<string, { model: Model; local: TensorInfo }>();
  private readonly byName = new Map<string, TensorInfo>();

  constructor(
    readonly path: string,
    private readonly parts: readonly Model[],
  ) {
    const files: ModelFile[] = [];
    const tensors: TensorInfo[] = [];
    for (const m of parts) {
      const base = files.length;
      files.push(...m.files);
      for (const t of m.tensors) {
        if (this.owner.has(t.name)) {
          throw new FormatError('tensor_duplicate', `appears in two shards: ${this.owner.get(t.name)!.model.path} and ${m.path}`, path, t.name);
        }
        const g: TensorInfo = { ...t, file: base + t.file };
        this.owner.set(t.name, { model: m, local: t });
        this.byName.set(t.name, g);
        tensors.push(g);
      }
    }
    this.files = files;
    this.tensors = tensors;
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.parts[0]?.metadata ?? {};
  }

  get notes(): readonly string[] {
    return this.parts.flatMap((m, i) => (m.notes ?? []).map((n) => `shard ${i + 1}: ${n}`));
  }

  get safety(): { clean: boolean; text: string } | undefined {
    const unclean = this.parts.filter((m) => m.safety && !m.safety.clean);
    if (!this.parts.some((m) => m.safety)) return undefined;
    if (unclean.length === 0) return { clean: true, text: 'Only tensor data' };
    return { clean: false, text: unclean.map((m) => `${m.path}: ${m.safety!.text}`).join('; ') };
  }

  tensor(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  private local(t: TensorInfo): { model: Model; local: TensorInfo } {
    const o = this.owner.get(t.name);
    if (!o) throw new FormatError('not_found', 'tensor does not belong to this model', this.path, t.name);
    return o;
  }

  read(t: TensorInfo, offset: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    const o = this.local(t);
    return o.model.read(o.local, offset, into, signal);
  }

  chunks(t: TensorInfo, opts?: ChunkOptions): AsyncIterable<Uint8Array> {
    const o = this.local(t);
    return o.model.chunks(o.local, opts);
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((m) => m.close()));
  }
}
