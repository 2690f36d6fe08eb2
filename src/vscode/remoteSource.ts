import type * as vscode from 'vscode';
import { HttpOpener } from '../format/httpOpener';

/**
 * The part of models-over-HTTP that `openerFor` (workspaceSource.ts) needs, kept free of
 * a runtime `vscode` import like that module. URIs of this scheme are
 * `tensor-workbench-remote:/HOST/PATH/NAME?<the URL or hf:// path>` (see remoteModel.ts).
 */
export const REMOTE_SCHEME = 'tensor-workbench-remote';

let hubToken: () => Promise<string | undefined> = async () => process.env.HF_TOKEN || undefined;

/** Where the Hub token comes from (the extension's SecretStorage, then HF_TOKEN); read at each request to the Hub. */
export function setHubTokenSource(source: () => Promise<string | undefined>): void {
  hubToken = source;
}

/** An opener for one remote model, with the token read lazily (and sent to the Hub only). */
export function remoteOpener(): HttpOpener {
  return new HttpOpener({ token: () => hubToken() });
}

/** The URL or hf:// path a remote URI stands for. */
export function remotePathOf(uri: vscode.Uri): string {
  return decodeURIComponent(uri.query);
}
