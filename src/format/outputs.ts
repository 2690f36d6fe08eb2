// The rules every command that writes follows (convert, quantize, merge; the CLI and the
// extension reach them through the pipelines):
//  1. No output may replace or remove an input: real paths (symlinks resolved, folders
//     included) and, for files that exist, device plus inode (hard links) are compared for
//     every file the job may write against every file it reads. Checked before anything is written.
//  2. A missing output folder is created, with its missing parents; if the job fails or is
//     cancelled, the folders it created are removed again (only while empty).
//  3. Temporary files carry the writer's PID, its start time and its host, so a later run can
//     tell the leftovers of a killed run (dead PID, or a PID reused by another process) from
//     the temporaries of a run that is still alive, and sweep only the former.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, realpath, rmdir, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { FormatError, fromOsError } from './errors';
import type { Model } from './model';

/** What a job may write: exact files, and families of names in a folder (shards whose count is not known yet). */
export interface OutputSet {
  readonly files: readonly string[];
  readonly families?: readonly { readonly dir: string; readonly pattern: RegExp }[];
}

interface FileId {
  readonly real: string;
  readonly id?: string;
  readonly given: string;
}

/** The real path of `p`, existing or not: the deepest existing ancestor is resolved, the rest appended. */
export async function realPathOf(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    if (parent === abs) return abs;
    return join(await realPathOf(parent), basename(abs));
  }
}

async function identify(p: string): Promise<FileId> {
  const real = await realPathOf(p);
  try {
    const s = await stat(p);
    return { real, given: p, id: s.isFile() ? `${s.dev}:${s.ino}` : undefined };
  } catch {
    return { real, given: p };
  }
}

function clash(output: string, input: string): FormatError {
  return new FormatError('output_is_input', `the output would replace the input ${input}; choose another output path`, output);
}

/**
 * Throws `output_is_input` when any file in `outputs` is one of `inputs`: the same
 * real path (through symlinked files or folders, relative or absolute), or the same
 * device and inode (a hard link). Inputs that do not exist are ignored.
 */
export async function refuseOutputsOverInputs(inputs: readonly string[], outputs: OutputSet): Promise<void> {
  const ins = await Promise.all([...new Set(inputs)].map(identify));
  const byReal = new Map(ins.map((i) => [i.real, i.given]));
  const byId = new Map(ins.filter((i) => i.id).map((i) => [i.id!, i.given]));
  for (const fam of outputs.families ?? []) {
    const realDir = await realPathOf(fam.dir);
    for (const i of ins) {
      if (dirname(i.real) === realDir && fam.pattern.test(basename(i.real))) throw clash(join(fam.dir, basename(i.real)), i.given);
    }
    let names: string[] = [];
    try {
      names = await readdir(fam.dir);
    } catch {
      continue; // not there yet: nothing in it can be an input
    }
    for (const name of names.filter((n) => fam.pattern.test(n))) {
      const o = await identify(join(fam.dir, name));
      const hit = o.id ? byId.get(o.id) : undefined;
      if (hit !== undefined) throw clash(join(fam.dir, name), hit);
    }
  }
  for (const out of outputs.files) {
    const o = await identify(out);
    const hit = byReal.get(o.real) ?? (o.id ? byId.get(o.id) : undefined);
    if (hit !== undefined) throw clash(out, hit);
  }
}

/**
 * The files a model was read from: its shards, what was opened, and the index beside
 * the shards (a folder opened as a model names only the folder, not the index it read).
 */
export async function modelInputs(model: Model): Promise<string[]> {
  const out = [model.path, ...model.files.map((f) => f.path)];
  for (const dir of new Set(model.files.map((f) => dirname(f.path)))) {
    try {
      for (const n of await readdir(dir)) if (n.endsWith('.safetensors.index.json')) out.push(join(dir, n));
    } catch {
      /* unreadable: the shards themselves are still listed */
    }
  }
  return out;
}

/**
 * Creates `dir` and its missing parents. Returns an undo that removes the folders
 * this call created, deepest first, only while they are empty.
 */
export async function ensureOutputDir(dir: string): Promise<() => Promise<void>> {
  const abs = resolve(dir);
  const made: string[] = [];
  for (let d = abs; ; d = dirname(d)) {
    try {
      const s = await stat(d);
      if (!s.isDirectory()) throw new FormatError('not_a_folder', 'the output folder is a file', d);
      break;
    } catch (e) {
      if (e instanceof FormatError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromOsError(e, d);
      made.push(d);
      if (dirname(d) === d) break;
    }
  }
  made.reverse();
  const undo = async () => {
    for (const d of [...made].reverse()) await rmdir(d).catch(() => {});
  };
  try {
    for (const d of made) await mkdir(d);
  } catch (e) {
    await undo();
    throw fromOsError(e);
  }
  return undo;
}

// ---- temporary files -------------------------------------------------------------------

/** Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot ('0' where there is no /proc). */
function parseStartTime(stat: string): string {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command name start at field 3 (state), so field 22 is index 19.
  return /^\d+$/.test(fields[19] ?? '') ? fields[19] : '0';
}

let self: { pid: number; start: string; host: string } | undefined;

function selfTag(): { pid: number; start: string; host: string } {
  if (!self) {
    let start = '0';
    try {
      // A few hundred bytes from procfs, once per process.
      start = parseStartTime(readFileSync('/proc/self/stat', 'utf8'));
    } catch {
      /* no procfs: liveness falls back to the PID alone */
    }
    // Folders shared between machines or containers hold temporaries whose PIDs mean nothing here.
    const host = createHash('sha256').update(hostname()).digest('hex').slice(0, 6);
    self = { pid: process.pid, start, host };
  }
  return self;
}

const TEMP_NAME = /^\.(.+)\.tmp-(\d+)\.(\d+)\.([0-9a-f]{6})\.([0-9a-f]{12})$/;

/** A temp name beside `target` (so the final rename never crosses a file system) that says who wrote it. */
export function tempPathFor(target: string): string {
  const t = selfTag();
  return join(dirname(target), `.${basename(target)}.tmp-${t.pid}.${t.start}.${t.host}.${randomBytes(6).toString('hex')}`);
}

/** Whether the process that wrote a temp named with (pid, start) may still be running. */
async function writerAlive(pid: number, start: string): Promise<boolean> {
  const me = selfTag();
  if (pid === me.pid) return start === me.start || me.start === '0';
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: a live process owned by someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (start === '0') return true;
  try {
    return parseStartTime(await readFile(`/proc/${pid}/stat`, 'utf8')) === start;
  } catch {
    return true; // cannot tell: keep the file
  }
}

export interface SweepResult {
  readonly files: number;
  readonly bytes: number;
}

/**
 * Removes, from each folder in `dirs`, the temporaries this tool's writers left
 * when their process was killed: only names of our exact pattern, written on this
 * host by a process that is gone. Anything else, and any temp of a live run, stays.
 */
export async function sweepStaleTemps(dirs: readonly string[]): Promise<SweepResult> {
  const me = selfTag();
  let files = 0;
  let bytes = 0;
  for (const dir of new Set(dirs.map((d) => resolve(d)))) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = TEMP_NAME.exec(name);
      if (!m || m[4] !== me.host) continue;
      if (await writerAlive(Number(m[2]), m[3])) continue;
      const p = join(dir, name);
      try {
        const s = await lstat(p);
        if (!s.isFile()) continue;
        await unlink(p);
        files++;
        bytes += s.size;
      } catch {
        /* gone already, or not ours to remove */
      }
    }
  }
  return { files, bytes };
}

/** The one line a sweep reports, or undefined when there was nothing to sweep. */
export function sweepNotice(r: SweepResult): string | undefined {
  if (r.files === 0) return undefined;
  const mb = r.bytes / 1e6;
  return `removed ${r.files} stale temporary file${r.files === 1 ? '' : 's'} (${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB) from an interrupted run`;
}

export interface PreparedOutputs {
  /** Removes the output folders this job created (call on failure or cancel). */
  readonly undo: () => Promise<void>;
}

/**
 * The steps every writer takes before its first byte: refuse outputs that are
 * inputs, create the output folders, and sweep stale temporaries beside the outputs
 * (reported through `notice`).
 */
export async function prepareOutputs(inputs: readonly string[], outputs: OutputSet, notice?: (line: string) => void): Promise<PreparedOutputs> {
  await refuseOutputsOverInputs(inputs, outputs);
  const dirs = [...new Set([...outputs.files.map((f) => dirname(resolve(f))), ...(outputs.families ?? []).map((f) => resolve(f.dir))])];
  const undos: (() => Promise<void>)[] = [];
  const undo = async () => {
    for (const u of undos.reverse()) await u();
  };
  try {
    for (const d of dirs) undos.push(await ensureOutputDir(d));
  } catch (e) {
    await undo();
    throw e;
  }
  const line = sweepNotice(await sweepStaleTemps(dirs));
  if (line) notice?.(line);
  return { undo };
}
