import type * as vscode from 'vscode';
import { FormatError } from '../format/errors';
import { MAX_INDEX_BYTES, nodeOpener } from '../format/openModel';
import type { ByteSource } from '../format/source';
import type { SourceOpener } from '../format/model';
import { REMOTE_SCHEME, remoteOpener, remotePathOf } from './remoteSource';

/**
 * The stable `vscode.workspace.fs` API has no positional read, only whole-file
 * `readFile`. A virtual file is therefore fetched once, on the first read, and
 * this cap keeps one such file from exhausting the extension host's memory
 * (files on the extension host's disk are streamed and have no cap).
 */
export const WORKSPACE_FS_MAX_BYTES = 1 << 30;

type WorkspaceFs = Pick<vscode.FileSystem, 'stat' | 'readFile' | 'readDirectory'>;

/** A file reached only through `vscode.workspace.fs` (virtual or remote-only schemes). */
export class WorkspaceFileSource implements ByteSource {
  private bytes: Promise<Uint8Array> | undefined;

  private constructor(
    private readonly fs: WorkspaceFs,
    private readonly uri: vscode.Uri,
    readonly name: string,
    readonly size: number,
    readonly mtimeMs: number,
  ) {}

  static async open(fs: WorkspaceFs, uri: vscode.Uri): Promise<WorkspaceFileSource> {
    const name = uri.toString(true);
    let st: vscode.FileStat;
    try {
      st = await fs.stat(uri);
    } catch (e) {
      throw toFormatError(e, name);
    }
    requireFile(st, name);
    return new WorkspaceFileSource(fs, uri, name, st.size, st.mtime);
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    const bytes = await this.load();
    if (offset >= bytes.length) return 0;
    const n = Math.min(into.length, bytes.length - offset);
    into.set(bytes.subarray(offset, offset + n));
    return n;
  }

  private load(): Promise<Uint8Array> {
    if (!this.bytes) {
      if (this.size > WORKSPACE_FS_MAX_BYTES) {
        return Promise.reject(
          new FormatError('unsupported', `is ${this.size} bytes; files above ${WORKSPACE_FS_MAX_BYTES} bytes can only be opened from a local or remote disk, not a virtual file system`, this.name),
        );
      }
      const pending = Promise.resolve(this.fs.readFile(this.uri)).then(
        (b) => {
          // The file changed between stat and read: offsets from the header would be wrong.
          if (b.length !== this.size) throw new FormatError('file_changed', 'the file changed while it was being opened', this.name);
          return b;
        },
        (e) => {
          throw toFormatError(e, this.name);
        },
      );
      // A failed fetch is not cached, so that a later read can retry.
      pending.catch(() => {
        if (this.bytes === pending) this.bytes = undefined;
      });
      this.bytes = pending;
      return pending;
    }
    return this.bytes;
  }

  async close(): Promise<void> {
    this.bytes = undefined;
  }
}

/**
 * Opens the files of a model through `vscode.workspace.fs`. Paths are the URI's
 * POSIX path (`uri.path`); the scheme and authority come from the base URI, so the
 * format core can join and split paths without knowing about URIs.
 */
export class WorkspaceSourceOpener implements SourceOpener {
  constructor(
    private readonly fs: WorkspaceFs,
    private readonly base: vscode.Uri,
  ) {}

  uri(path: string): vscode.Uri {
    return this.base.with({ path, query: '', fragment: '' });
  }

  open(path: string): Promise<ByteSource> {
    return WorkspaceFileSource.open(this.fs, this.uri(path));
  }

  async readText(path: string): Promise<string> {
    try {
      const st = await this.fs.stat(this.uri(path));
      requireFile(st, this.uri(path).toString(true));
      if (st.size > MAX_INDEX_BYTES) throw new FormatError('index_invalid', `is ${st.size} bytes, above the ${MAX_INDEX_BYTES}-byte limit for an index`, this.uri(path).toString(true));
      return new TextDecoder('utf-8', { fatal: true }).decode(await this.fs.readFile(this.uri(path)));
    } catch (e) {
      throw toFormatError(e, this.uri(path).toString(true));
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return (await this.fs.readDirectory(this.uri(path))).map(([name]) => name);
    } catch (e) {
      throw toFormatError(e, this.uri(path).toString(true));
    }
  }
}

/**
 * Files on the extension host's own disk: streamed with positional reads, through the
 * core's opener, which refuses FIFOs, devices and folders without blocking.
 */
export const nodeSourceOpener: SourceOpener = nodeOpener;

/**
 * The opener for a resource, and the path to hand to the format core. `file:` URIs
 * are on the extension host's disk (also in remote windows, where the host runs
 * remotely), so they are streamed; models by URL are read with HTTP Range requests;
 * every other scheme goes through workspace.fs.
 */
export function openerFor(uri: vscode.Uri, fs: WorkspaceFs): { opener: SourceOpener; path: string } {
  if (uri.scheme === 'file') return { opener: nodeSourceOpener, path: uri.fsPath };
  if (uri.scheme === REMOTE_SCHEME) return { opener: remoteOpener(), path: remotePathOf(uri) };
  return { opener: new WorkspaceSourceOpener(fs, uri), path: uri.path };
}

/**
 * `FileType.File` is 1 in VS Code's API (a stable value, and this module imports only
 * vscode's types). A provider reports FIFOs and devices as `Unknown` (0), folders as 2.
 */
const FILE_TYPE_FILE = 1;

function requireFile(st: vscode.FileStat, name: string): void {
  if ((st.type & FILE_TYPE_FILE) === 0) throw new FormatError('not_a_file', 'is not a regular file (a folder, FIFO or device); a regular file was expected', name);
}

/** vscode.FileSystemError and Node errors both carry a `code`. */
function toFormatError(e: unknown, name: string): FormatError {
  if (e instanceof FormatError) return e;
  const code = (e as { code?: unknown })?.code;
  if (code === 'FileNotFound' || code === 'ENOENT') return new FormatError('not_found', 'no such file', name);
  return new FormatError('io', e instanceof Error ? e.message : String(e), name);
}
