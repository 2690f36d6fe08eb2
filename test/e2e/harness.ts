/**
 * Shared by the e2e suites: a real VS Code (code-server, scripts/codeserver.sh) with
 * the packaged linux-x64 VSIX installed, a generated workspace, and a headless
 * Debian chromium driven by playwright-core.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Frame, type Locator, type Page } from 'playwright-core';
import { PRESETS, writeLlama } from '../fixtures/llama';

/** Bundles run from dist/, so the repository root is one level up. */
export const ROOT = resolve(__dirname, '..');
export const ARTIFACTS = join(ROOT, '.artifacts', 'e2e');
export const CHROMIUM = '/usr/bin/chromium';

// The first install compiles native modules for about 2–3 minutes on 2 cores; 15 min means it is stuck.
export const INSTALL_TIMEOUT_MS = 15 * 60_000;
// A cold workbench with an extension host takes 10–30 s on a busy 2-core machine.
export const UI_TIMEOUT_MS = 90_000;

/**
 * Scratch space of one suite in one process: two test runs in the same checkout
 * (two people, or CI beside a developer) must not share a profile or a workspace.
 */
export function scratch(suite: string): string {
  return join(ROOT, '.cache', 'e2e', `${suite}-${process.pid}`);
}

/** Removes the suite's scratch space; screenshots stay in .artifacts/e2e. */
export function cleanScratch(suite: string): void {
  rmSync(scratch(suite), { recursive: true, force: true });
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = INSTALL_TIMEOUT_MS): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n${(r.stderr || '').slice(-4000)}${(r.stdout || '').slice(-2000)}`);
  }
  return r.stdout;
}

/**
 * Installs code-server into .cache/ when missing (scripts/test.sh has usually done it
 * already). Returns why the suite cannot run on this platform; a missing prerequisite
 * on Linux throws, naming the package and the command that installs it, so that the
 * suite fails instead of skipping: a green run must mean it ran.
 */
export function prerequisites(): string | undefined {
  if (process.platform !== 'linux') return 'the e2e suite runs on Linux only';
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (sudo apt-get install -y --no-install-recommends chromium libvulkan1)`);
  }
  sh('bash', ['scripts/codeserver.sh', 'install']);
  return undefined;
}

/** Packs the linux-x64 VSIX (what users install) and returns its path and its unpacked stage folder. */
export function buildVsix(suite: string): { vsix: string; stage: string } {
  const work = join(scratch(suite), 'package');
  const out = sh(process.execPath, ['scripts/package.mjs', '--target', 'linux-x64', '--work', work], {}, 5 * 60_000);
  const vsix = out.trim().split('\n').pop()!;
  return { vsix, stage: join(work, 'linux-x64') };
}

export interface Workspace {
  readonly dir: string;
  /** Paths relative to `dir`. */
  readonly model: string;
  readonly corrupt: string;
}

/**
 * The sample workspace from `node dist/sample.js DIR` (what the demo opens): a
 * sharded base, a fine-tuned copy, an adapter and a corrupt file.
 */
export async function makeWorkspace(name: string): Promise<Workspace> {
  const dir = join(scratch(name), 'workspace');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  sh(process.execPath, [join(ROOT, 'dist', 'sample.js'), dir], {}, 5 * 60_000);
  // The sample's models are sharded; the first journey opens one whole `model.safetensors`.
  if (!walk(dir).some((f) => /(^|\/)model\.safetensors$/.test(f))) await writeLlama(join(dir, 'single'), { ...PRESETS.tiny, shards: 1 });
  const files = walk(dir).filter((f) => f.endsWith('.safetensors'));
  const corrupt = files.find((f) => f.includes('corrupt'));
  const model = files.find((f) => /(^|\/)model\.safetensors$/.test(f));
  if (!corrupt || !model) throw new Error(`sample workspace ${dir} lacks a model or a corrupt file: ${files.join(', ')}`);
  return { dir, model, corrupt };
}

function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(join(dir, rel)).isDirectory()) out.push(...walk(dir, rel));
    else out.push(rel);
  }
  return out;
}

/**
 * The tensor names of a safetensors file, read by the test itself (8-byte length,
 * JSON header): an oracle that shares no code with the extension.
 */
export function headerTensorNames(file: string): string[] {
  return Object.keys(readHeader(file).entries);
}

/** Tensor name → shape, from the same independent header read. */
export function headerShapes(file: string): Record<string, number[]> {
  return Object.fromEntries(Object.entries(readHeader(file).entries).map(([n, e]) => [n, e.shape]));
}

/** Header entry of one tensor, as the file states it. */
interface HeaderEntry {
  readonly dtype: string;
  readonly shape: number[];
  readonly data_offsets: [number, number];
}

function readHeader(file: string): { dataStart: number; entries: Record<string, HeaderEntry> } {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, HeaderEntry>;
  delete header.__metadata__;
  return { dataStart: 8 + n, entries: header };
}

/**
 * A tensor's values in float64, decoded by the test from the file (BF16, F16, F32 only):
 * the oracle for the statistics the viewer shows.
 */
export function readTensorF64(file: string, name: string): { shape: number[]; values: Float64Array } {
  const { dataStart, entries } = readHeader(file);
  const e = entries[name];
  if (!e) throw new Error(`${file} has no tensor ${name}`);
  const raw = readFileSync(file).subarray(dataStart + e.data_offsets[0], dataStart + e.data_offsets[1]);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const f32 = new DataView(new ArrayBuffer(4));
  const f16 = (h: number) => {
    const s = h & 0x8000 ? -1 : 1;
    const ex = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (ex === 0) return s * m * 2 ** -24;
    if (ex === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (ex - 15);
  };
  const width = e.dtype === 'F32' ? 4 : 2;
  const values = new Float64Array(raw.byteLength / width);
  for (let i = 0; i < values.length; i++) {
    if (e.dtype === 'F32') values[i] = dv.getFloat32(i * 4, true);
    else if (e.dtype === 'F16') values[i] = f16(dv.getUint16(i * 2, true));
    else if (e.dtype === 'BF16') {
      f32.setUint32(0, dv.getUint16(i * 2, true) << 16);
      values[i] = f32.getFloat32(0);
    } else throw new Error(`the oracle does not decode ${e.dtype}`);
  }
  return { shape: e.shape, values };
}

/** Where a sharded model keeps a tensor, from its index.json. */
export function shardOf(indexFile: string, tensor: string): string {
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
  const shard = index.weight_map[tensor];
  if (!shard) throw new Error(`${indexFile} does not list ${tensor}`);
  return join(indexFile, '..', shard);
}

/** A tensor's raw bytes, read by the test from the file. */
export function readTensorBytes(file: string, name: string): Uint8Array {
  const { dataStart, entries } = readHeader(file);
  const e = entries[name];
  if (!e) throw new Error(`${file} has no tensor ${name}`);
  return new Uint8Array(readFileSync(file).subarray(dataStart + e.data_offsets[0], dataStart + e.data_offsets[1]));
}

export class CodeServer {
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly run: string,
  ) {}

  /** Starts a fresh instance (new profile and extensions folder) with the VSIX installed. */
  static start(name: string, opts: { vsix?: string; smoke?: boolean; env?: NodeJS.ProcessEnv } = {}): CodeServer {
    const run = join(scratch(name), 'run');
    const out = sh('bash', ['scripts/codeserver.sh', 'start'], {
      ...opts.env,
      TW_CS_RUN: run,
      TW_CS_VSIX: opts.vsix ?? '',
      TW_CS_SMOKE: opts.smoke ? '1' : '0',
      TW_CS_PARENT: String(process.pid),
    }, 3 * 60_000);
    const [, url] = out.trim().split('\n').pop()!.split(' ');
    return new CodeServer(url, Number(new URL(url).port), run);
  }

  folderUrl(folder: string, payload?: [string, string][]): string {
    const q = `folder=${encodeURIComponent(folder)}` + (payload ? `&payload=${encodeURIComponent(JSON.stringify(payload))}` : '');
    return `${this.url}?${q}`;
  }

  /** A `vscode-remote://` URI for a path on this server, as the smoke-test payload wants. */
  remoteUri(path: string): string {
    return `vscode-remote://127.0.0.1:${this.port}${path}`;
  }

  log(): string {
    try {
      return readFileSync(join(this.run, 'code-server.log'), 'utf8');
    } catch {
      return '';
    }
  }

  stop(): void {
    spawnSync('bash', ['scripts/codeserver.sh', 'stop', this.run], { cwd: ROOT, stdio: 'ignore' });
  }
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: ['--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
}

/** Saves `.artifacts/e2e/<journey>-<nn>-<step>.png`; steps are numbered in the order taken. */
export class Shots {
  private n = 0;
  constructor(private readonly journey: string) {
    mkdirSync(ARTIFACTS, { recursive: true });
  }
  async take(page: Page, step: string): Promise<string> {
    const file = join(ARTIFACTS, `${this.journey}-${String(++this.n).padStart(2, '0')}-${step}.png`);
    await page.screenshot({ path: file });
    return file;
  }
}

/**
 * Opens the folder and waits until the explorer lists its entries and our
 * contributions are registered: a file opened before the extensions are scanned
 * goes to the text editor, which is not what the journeys are about.
 */
export async function openWorkbench(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.locator('.monaco-workbench').waitFor({ timeout: UI_TIMEOUT_MS });
  await page.locator('.explorer-folders-view .monaco-list-row').first().waitFor({ timeout: UI_TIMEOUT_MS });
  await waitForCommand(page, 'Tensor Workbench: Show Log');
}

/**
 * Opens the command palette and types `>title` until the command is listed (retyping,
 * because the list does not re-filter when a `when` context key such as
 * isWorkspaceTrusted settles after the palette opened). Leaves it open on the command.
 */
async function paletteFind(page: Page, title: string, timeout: number): Promise<boolean> {
  const end = Date.now() + timeout;
  const input = page.locator('.quick-input-widget input');
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title });
  while (Date.now() < end) {
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill(`>${title}`);
    const found = await row
      .first()
      .waitFor({ timeout: 2_000 })
      .then(() => true, () => false);
    if (found) return true;
    await page.keyboard.press('Escape');
    await page.waitForTimeout(500);
  }
  return false;
}

/** Polls the command palette until `title` is listed, then closes it. */
export async function waitForCommand(page: Page, title: string, timeout = UI_TIMEOUT_MS): Promise<void> {
  if (!(await paletteFind(page, title, timeout))) throw new Error(`command "${title}" never appeared in the palette`);
  await page.keyboard.press('Escape');
}

/**
 * Answers VS Code's own file dialog (the one a browser workbench shows for
 * showOpenDialog/showSaveDialog): types the absolute path and accepts it.
 */
export async function answerFileDialog(page: Page, titlePart: string, path: string): Promise<void> {
  const widget = quickInput(page, titlePart);
  await widget.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
  const input = widget.locator('input').first();
  // The dialog fills in its default folder asynchronously after it shows, which can
  // overwrite what was typed: type until the path stays put.
  const end = Date.now() + UI_TIMEOUT_MS;
  for (;;) {
    await input.fill(path);
    await page.waitForTimeout(500);
    if ((await input.inputValue()) === path) break;
    if (Date.now() > end) throw new Error(`the file dialog "${titlePart}" keeps replacing the typed path`);
  }
  // Its OK button accepts the typed path (Enter on a typed path may only navigate).
  await widget.locator('.monaco-text-button:visible').first().click();
  await widget.waitFor({ state: 'hidden', timeout: UI_TIMEOUT_MS });
}

/**
 * Answers a folder dialog: the dialog navigates into a typed folder as it resolves the path,
 * and a click on its button while it is doing so only navigates. Types the folder with a
 * trailing slash, waits until the dialog stands in it, then clicks until the dialog closes.
 */
export async function answerFolderDialog(page: Page, titlePart: string, dir: string): Promise<void> {
  const widget = quickInput(page, titlePart);
  await widget.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
  const input = widget.locator('input').first();
  const want = dir.endsWith('/') ? dir : `${dir}/`;
  const end = Date.now() + UI_TIMEOUT_MS;
  for (;;) {
    if ((await input.inputValue()) !== want) await input.fill(want);
    await page.waitForTimeout(500);
    if ((await input.inputValue()) === want) break;
    if (Date.now() > end) throw new Error(`the folder dialog "${titlePart}" keeps replacing the typed path`);
  }
  for (;;) {
    await widget.locator('.monaco-text-button:visible').first().click();
    try {
      await widget.waitFor({ state: 'hidden', timeout: 2000 });
      return;
    } catch {
      if (Date.now() > end) throw new Error(`the folder dialog "${titlePart}" did not accept ${want}`);
    }
  }
}

/** The quick input (pick, input box, file dialog) whose title contains `titlePart`. */
export function quickInput(page: Page, titlePart: string | RegExp): Locator {
  return page.locator('.quick-input-widget').filter({ has: page.locator('.quick-input-title', { hasText: titlePart }) });
}

/** Waits for a notification whose message contains `text` (toast or Notification Center). */
export async function notification(page: Page, text: string | RegExp, timeout = UI_TIMEOUT_MS): Promise<string> {
  const item = page.locator('.notification-list-item-message', { hasText: text }).first();
  await item.waitFor({ state: 'attached', timeout });
  return (await item.textContent()) ?? '';
}

/** Runs a command from the palette (F1), as a user does. */
export async function runCommand(page: Page, title: string): Promise<void> {
  if (!(await paletteFind(page, title, UI_TIMEOUT_MS))) throw new Error(`command "${title}" never appeared in the palette`);
  await page.keyboard.press('Enter');
}

/** The explorer row whose label is exactly `name`. */
export function explorerRow(page: Page, name: string): Locator {
  return page.locator('.explorer-folders-view .monaco-list-row').filter({
    has: page.locator('.label-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
  });
}

/** Expands the folders on the way to `relPath`, then double-clicks the file, as a user does. */
export async function doubleClickInExplorer(page: Page, relPath: string): Promise<void> {
  const parts = relPath.split('/');
  for (const folder of parts.slice(0, -1)) {
    const row = explorerRow(page, folder).first();
    await row.waitFor({ timeout: UI_TIMEOUT_MS });
    if ((await row.getAttribute('aria-expanded')) !== 'true') await row.click();
  }
  const file = explorerRow(page, parts[parts.length - 1]).first();
  await file.waitFor({ timeout: UI_TIMEOUT_MS });
  await file.dblclick();
}

/**
 * Webviews are nested iframes; returns the frame in which `selector` first appears.
 * Polls every 250 ms because frames come and go while the editor loads.
 */
export async function frameWith(page: Page, selector: string, timeout = UI_TIMEOUT_MS): Promise<Frame> {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    for (const f of page.frames()) {
      try {
        if (await f.$(selector)) return f;
      } catch {
        // The frame navigated or detached while we looked: try the next one.
      }
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`no frame shows ${selector} after ${timeout} ms`);
}

/** The label of the active editor tab, as shown. */
export async function activeTabLabel(page: Page): Promise<string> {
  // The workbench renders the extension in its own element, which innerText puts on a new line.
  return (await page.locator('.tabs-container .tab.active .tab-label').first().innerText()).replace(/\s*\n\s*/g, '').trim();
}

/**
 * Runs one journey in a fresh page; on failure it saves a `failure` screenshot
 * before rethrowing, so the artifact shows where the journey stopped.
 */
export async function journey(browser: Browser, url: string, name: string, body: (page: Page, shots: Shots) => Promise<void>): Promise<void> {
  const shots = new Shots(name);
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  try {
    await openWorkbench(page, url);
    // Every journey starts from an empty editor area: the window restores the editors that
    // the previous journey's window left open, and a journey is about what its own steps open.
    await runCommand(page, 'View: Close All Editors');
    // A dirty untitled document (a report opened as Markdown) asks whether to save: it need not.
    const dontSave = page.locator('.monaco-dialog-box .monaco-button', { hasText: "Don't Save" });
    if (await dontSave.first().waitFor({ timeout: 1_500 }).then(() => true, () => false)) await dontSave.first().click();
    await body(page, shots);
  } catch (e) {
    await shots.take(page, 'failure').catch(() => undefined);
    throw e;
  } finally {
    await page.close();
  }
}

/**
 * The JavaScript heap in use where `frame` runs, after a full garbage collection, through
 * the DevTools protocol: the frame's own session when it is an out-of-process iframe,
 * else the page's (a same-process frame shares the page's heap).
 */
export async function heapUsedBytes(page: Page, frame: Frame): Promise<number> {
  const session = await page
    .context()
    .newCDPSession(frame)
    .catch(() => page.context().newCDPSession(page));
  try {
    await session.send('HeapProfiler.collectGarbage');
    const { usedSize } = await session.send('Runtime.getHeapUsage');
    return usedSize;
  } finally {
    await session.detach().catch(() => undefined);
  }
}
