/**
 * Results the viewer computed (stats, heatmaps), keyed by the file's identity on
 * disk. The key includes size and mtime of every file of the model, so a result
 * computed before the file changed can never be served after it: a changed file
 * gives new keys, and the old entries simply age out.
 */

export interface FileStamp {
  readonly path: string;
  readonly bytes: number;
  readonly mtimeMs?: number;
}

/** Identity of a model's files as they were when read; part of every cache key. */
export function stampKey(files: readonly FileStamp[]): string {
  return files.map((f) => `${f.path}\u0000${f.bytes}\u0000${f.mtimeMs ?? 'unknown'}`).join('\u0001');
}

/** Key of one result: the files' stamp, the kind of result, and its parameters in a fixed order. */
export function resultKey(stamp: string, kind: string, params: Readonly<Record<string, string | number>>): string {
  const ps = Object.keys(params)
    .sort()
    .map((k) => `${k}=${params[k]}`)
    .join('&');
  return `${stamp}\u0002${kind}\u0002${ps}`;
}

/**
 * A small LRU map. Entries are kept by count, not bytes: each is a few KB (bins,
 * a 512×512 byte image at most), so 64 entries stay under ~20 MB.
 */
export class ResultCache<V> {
  private readonly map = new Map<string, V>();

  constructor(readonly capacity = 64) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as string);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}
