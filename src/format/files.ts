import { open, rename, stat, unlink } from 'node:fs/promises';
import { tempPathFor } from './writer';

/** Paths on the local disk that the writers check before they write (outputs, never inputs). */

export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Writes `text` to a temp beside `path`; `commit` renames it into place, `discard` removes it. */
export async function stageText(path: string, text: string): Promise<{ commit: () => Promise<string>; discard: () => Promise<void> }> {
  const tmp = tempPathFor(path);
  const discard = () => unlink(tmp).catch(() => {});
  try {
    const h = await open(tmp, 'wx');
    try {
      await h.writeFile(text);
      await h.sync();
    } finally {
      await h.close();
    }
  } catch (e) {
    await discard();
    throw e;
  }
  return { commit: async () => (await rename(tmp, path), path), discard };
}

/** Writes a small text file (a config.json) as the writers write data: temp file, fsync, rename. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const staged = await stageText(path, text);
  try {
    await staged.commit();
  } catch (e) {
    await staged.discard();
    throw e;
  }
}
