import type * as vscode from 'vscode';

/**
 * Base class for anything that owns other disposables: a provider, a panel, a job.
 * Children are disposed in reverse registration order, each at most once, and one
 * child that throws does not stop the others from being released.
 */
export abstract class Disposable implements vscode.Disposable {
  private readonly children: vscode.Disposable[] = [];
  private disposedFlag = false;

  get isDisposed(): boolean {
    return this.disposedFlag;
  }

  /** Takes ownership of `child`; when this object is already disposed, disposes it at once. */
  protected register<T extends vscode.Disposable>(child: T): T {
    if (this.disposedFlag) child.dispose();
    else this.children.push(child);
    return child;
  }

  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    disposeAll(this.children.splice(0).reverse());
  }
}

/** Disposes every item, in order; rethrows the first error only after all were tried. */
export function disposeAll(items: Iterable<vscode.Disposable>): void {
  let first: unknown;
  for (const d of items) {
    try {
      d.dispose();
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}

/** A disposable from a plain callback, for resources that are not VS Code objects. */
export function toDisposable(fn: () => void): vscode.Disposable {
  let done = false;
  return {
    dispose() {
      if (done) return;
      done = true;
      fn();
    },
  };
}
