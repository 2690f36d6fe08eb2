import * as vscode from 'vscode';
import { FormatError } from '../format/errors';
import { isRemotePath, parseHubPath } from '../format/httpOpener';
import { registerCommand } from './commands';
import { log } from './log';
import { ReadonlyFs } from './readonlyFs';
import { REMOTE_SCHEME, remoteOpener, remotePathOf, setHubTokenSource } from './remoteSource';

/** SecretStorage key of the Hugging Face token. */
const TOKEN_KEY = 'tensorWorkbench.hfToken';

/**
 * Models read over HTTP open in the same viewer as files, under URIs of this scheme:
 * `tensor-workbench-remote:/HOST/PATH/NAME?<the URL or hf:// path>`. The path gives the
 * editor its title and the viewer its kind (index or file); the query is what the
 * format core opens. The viewer reads it through `openerFor` (src/vscode/workspaceSource.ts),
 * which hands it to an HttpOpener; a read-only file system (RemoteFs) makes the scheme a
 * resource VS Code can open and watch like any other.
 */
export function remoteUri(path: string): vscode.Uri {
  let shown: string;
  if (/^hf:\/\//i.test(path)) {
    const p = parseHubPath(path);
    shown = `/hf/${p.owner}/${p.name}${p.file ? '/' + p.file : ''}`;
  } else {
    const u = new URL(path);
    shown = `/${u.host}${u.pathname}`;
  }
  return vscode.Uri.from({ scheme: REMOTE_SCHEME, path: shown, query: encodeURIComponent(path) });
}

/** Why the text is not something the viewer can open, or undefined when it is. */
export function checkRemoteInput(text: string): string | undefined {
  const v = text.trim();
  if (v === '') return undefined;
  if (!isRemotePath(v)) return 'Enter an https:// URL or hf://OWNER/REPO[@REVISION][/PATH]';
  try {
    if (/^hf:\/\//i.test(v)) parseHubPath(v);
    else new URL(v);
  } catch (e) {
    return e instanceof FormatError ? e.message : 'Not a valid URL';
  }
  return undefined;
}

/**
 * The scheme's file system: read-only, never changing (a changed file surfaces as
 * `file_changed` from the ETag checks), and no whole-file reads of weights, which would
 * download them: only an index or other JSON (capped like any index) is read whole, so
 * that "Reopen With… Text" works on an index.
 */
class RemoteFs extends ReadonlyFs {
  /** Every URI of the scheme is something the viewer opens (a repository too), so each is a file. */
  stat(): vscode.FileStat {
    return { type: vscode.FileType.File, ctime: 0, mtime: 0, size: 0, permissions: vscode.FilePermission.Readonly };
  }
  async readFile(uri: vscode.Uri): Promise<Uint8Array> {
    const path = remotePathOf(uri);
    if (!path.endsWith('.json')) throw vscode.FileSystemError.Unavailable(`${path} is read over HTTP by the Tensor Workbench viewer only`);
    return new TextEncoder().encode(await remoteOpener().readText(path));
  }
  readDirectory(): [string, vscode.FileType][] {
    return [];
  }
}

/** "Open Model from URL or Hub…" and "Set Hugging Face Token". Both only read; both work without workspace trust. */
export class RemoteModelCommands {
  static register(context: vscode.ExtensionContext, openInViewer: (uri: vscode.Uri) => Promise<void>): void {
    // The token set with "Set Hugging Face Token", else HF_TOKEN; read at each request, so a new token applies at once.
    setHubTokenSource(async () => (await context.secrets.get(TOKEN_KEY)) || process.env.HF_TOKEN || undefined);
    context.subscriptions.push(vscode.workspace.registerFileSystemProvider(REMOTE_SCHEME, new RemoteFs(), { isReadonly: true, isCaseSensitive: true }));
    registerCommand(context, 'tensorWorkbench.openModelFromUrl', async (arg?: string) => {
      // A URL just copied from the browser is the likely answer: offer it (2 KB: longer than any model URL, and an input box stays usable).
      const copied = typeof arg === 'string' ? '' : (await vscode.env.clipboard.readText().then((t) => t.trim(), () => '')).slice(0, 2048);
      const text =
        typeof arg === 'string'
          ? arg
          : await vscode.window.showInputBox({
              title: 'Open Model from URL or Hub',
              prompt: 'A .safetensors file or a model.safetensors.index.json by https:// URL, or hf://OWNER/REPO[@REVISION][/PATH]. Only the header is read to open it.',
              placeHolder: 'hf://OWNER/REPO/model.safetensors',
              value: isRemotePath(copied) && !checkRemoteInput(copied) ? copied : undefined,
              ignoreFocusOut: true,
              validateInput: checkRemoteInput,
            });
      const path = text?.trim();
      if (!path) return;
      const why = checkRemoteInput(path);
      if (why) throw new FormatError('unsupported', why, path);
      // Not the query: a signed URL carries its credentials there.
      log.info(`viewer: opening ${path.replace(/\?.*$/, '')} over HTTP`);
      await openInViewer(remoteUri(path));
    });
    registerCommand(context, 'tensorWorkbench.setHfToken', async () => {
      const value = await vscode.window.showInputBox({
        title: 'Set Hugging Face Token',
        prompt: 'An access token (hf_…) for gated and private repositories. It is kept in VS Code’s secret storage and sent only to the Hub. Leave empty to remove it.',
        password: true,
        ignoreFocusOut: true,
        validateInput: (v) => (/\s/.test(v.trim()) ? 'A token has no spaces' : undefined),
      });
      if (value === undefined) return;
      if (value.trim() === '') {
        await context.secrets.delete(TOKEN_KEY);
        void vscode.window.showInformationMessage('Hugging Face token removed.');
        return;
      }
      await context.secrets.store(TOKEN_KEY, value.trim());
      void vscode.window.showInformationMessage('Hugging Face token saved.');
    });
  }
}
