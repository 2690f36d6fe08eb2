import { open, stat, type FileHandle } from 'node:fs/promises';
import { FormatError } from './errors';

/**
 * The one way the core reads bytes. Implementations: a Node FileHandle (here),
 * an in-memory buffer (tests), and `vscode.workspace.fs` (src/vscode, for remote
 * and virtual workspaces). Reads are positional and never touch the whole file.
 */
export interface ByteSource {
  /** A name for error messages: the path or URI of the file. */
  readonly name: string;
  /** Size in bytes, as of when the source was opened. */
  readonly size: number;
  /** Modification time in ms when known; used to detect files changed on disk. */
  readonly mtimeMs?: number;
  /**
   * Fills `into` from `offset`; returns the number of bytes read (short only at end of file).
   * `signal` aborts a read in flight where the source can (HTTP); local reads finish quickly anyway.
   */
  read(offset: number, into: Uint8Array, signal?: AbortSignal): Promise<number>;
  /**
   * True when the file no longer matches what was opened (size or mtime). Optional: a
   * source that can tell lets readers fail with `file_changed` instead of returning stale bytes.
   */
  changed?(): Promise<boolean>;
  close(): Promise<void>;
}

/** Reads with `fs.promises` positional reads. The file is opened read-only, never for writing. */
export class NodeFileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    readonly mtimeMs: number,
    private readonly handle: FileHandle,
  ) {}

  static async open(path: string): Promise<NodeFileSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new FormatError(err.code === 'ENOENT' ? 'not_found' : 'io', err.code === 'ENOENT' ? 'no such file' : String(err.message), path);
    }
    const st = await handle.stat();
    return new NodeFileSource(path, st.size, st.mtimeMs, handle);
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.handle.read(into, done, into.length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  /** True when the file on disk no longer matches what was opened. */
  async changed(): Promise<boolean> {
    try {
      const st = await stat(this.name);
      return st.size !== this.size || st.mtimeMs !== this.mtimeMs;
    } catch {
      return true;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** An in-memory source for tests and for small generated files. */
export class MemorySource implements ByteSource {
  readonly size: number;
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = '<memory>',
  ) {
    this.size = bytes.length;
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    if (offset >= this.size) return 0;
    const n = Math.min(into.length, this.size - offset);
    into.set(this.bytes.subarray(offset, offset + n));
    return n;
  }

  async close(): Promise<void> {}
}
