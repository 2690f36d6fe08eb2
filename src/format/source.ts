import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { FormatError, type FormatErrorCode } from './errors';

/**
 * Opens an input read-only in a way that cannot block, then checks what was opened.
 * A plain `open` of a FIFO waits for a writer forever, and a device such as /dev/zero
 * never ends; O_NONBLOCK makes the open return at once, and `fstat` on the handle (not
 * `stat` on the path, which a rename could race) refuses anything but a regular file.
 * Windows has no O_NONBLOCK and no FIFOs in the file system, so the flag is 0 there.
 */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; stat: Stats }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new FormatError('not_found', 'no such file', path);
    if (err.code === 'EISDIR') throw notAFile(path, 'a folder');
    if (err.code === 'ENXIO') throw notAFile(path, 'a socket');
    throw new FormatError('io', String(err.message), path);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw notAFile(path, kindOf(st));
    return { handle, stat: st };
  } catch (e) {
    await handle.close().catch(() => undefined);
    if (e instanceof FormatError) throw e;
    throw new FormatError('io', String((e as Error).message), path);
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function notAFile(path: string, what: string): FormatError {
  return new FormatError('not_a_file', `is ${what}; a regular file was expected`, path);
}

/**
 * Reads a small text input (a config, an index) through `openRegularFile`, refusing
 * one above `maxBytes` before reading it, and decoding it as strict UTF-8. `code` is
 * the error for a file too large or not UTF-8 (`index_invalid` for an index, …).
 */
export async function readSmallTextFile(path: string, maxBytes: number, what: string, code: FormatErrorCode): Promise<string> {
  const { handle, stat: st } = await openRegularFile(path);
  try {
    if (st.size > maxBytes) throw new FormatError(code, `is ${st.size} bytes, above the ${maxBytes}-byte limit for ${what}`, path);
    // Read to the size fstat gave, plus one byte to notice a file that grew meanwhile.
    const buf = new Uint8Array(st.size + 1);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await handle.read(buf, done, buf.length - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    if (done > st.size) throw new FormatError('file_changed', 'the file grew while it was being read', path);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, done));
    } catch {
      throw new FormatError(code, `${what} is not valid UTF-8`, path);
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

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

  /** `name` is the path messages show (the link an index named, when `path` is what it resolved to). */
  static async open(path: string, name = path): Promise<NodeFileSource> {
    const { handle, stat: st } = await openRegularFile(path);
    return new NodeFileSource(name, st.size, st.mtimeMs, handle);
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
