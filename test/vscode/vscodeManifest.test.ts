/**
 * The manifest against the rules VS Code and the Marketplace apply, and against the
 * product's own: an icon that is a real 128×128 PNG, menus that name declared commands,
 * and commands that write files unavailable in untrusted workspaces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import { join, resolve } from 'node:path';
import { GGUF_TARGETS } from '../../src/pipelines/ggufEstimate';

const ROOT = resolve(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const commands: { command: string; title: string; enablement?: string }[] = pkg.contributes.commands ?? [];
const menus: Record<string, { command: string; when?: string }[]> = pkg.contributes.menus ?? {};

/** Ids of commands that write files: their names say so (convert, quantize, merge, export, save). */
const WRITES = /(convert|quantize|merge|export|save|write)/i;

test('identity fields the Marketplace requires', () => {
  assert.match(pkg.name, /^[a-z0-9][a-z0-9-]*$/);
  assert.match(pkg.publisher, /^[a-z0-9][a-z0-9-]*$/);
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.match(pkg.engines.vscode, /^\^1\.\d+\.\d+$/);
  assert.ok(pkg.categories.length > 0 && pkg.keywords.length > 0);
  // vsce refuses to package more than 30 keywords (Marketplace tags).
  assert.ok(pkg.keywords.length <= 30);
  assert.match(pkg.galleryBanner.color, /^#[0-9a-f]{6}$/i);
  assert.ok(['dark', 'light'].includes(pkg.galleryBanner.theme));
  assert.equal(pkg.main, './dist/extension.js');
});

test('the icon is a valid 128×128 PNG whose pixels decode', () => {
  const png = readFileSync(join(ROOT, pkg.icon));
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(png.toString('ascii', 12, 16), 'IHDR');
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  assert.deepEqual([width, height], [128, 128]);
  const [depth, colorType] = [png[24], png[25]];
  assert.deepEqual([depth, colorType], [8, 6]);
  // Walk the chunks and inflate IDAT: one filter byte plus 4 bytes per pixel per row.
  const idat: Buffer[] = [];
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.toString('ascii', off + 4, off + 8);
    if (type === 'IDAT') idat.push(png.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  assert.equal(inflateSync(Buffer.concat(idat)).length, height * (1 + width * 4));
});

test('untrusted workspaces: supported in a limited way, with the reason stated', () => {
  const u = pkg.capabilities.untrustedWorkspaces;
  assert.equal(u.supported, 'limited');
  assert.ok(u.description.length > 20);
});

test('every menu entry names a declared command', () => {
  const declared = new Set(commands.map((c) => c.command));
  for (const [menu, entries] of Object.entries(menus)) {
    for (const e of entries) assert.ok(declared.has(e.command), `${menu} names undeclared command ${e.command}`);
  }
});

test('commands that write files are disabled without workspace trust, everywhere they appear', () => {
  for (const c of commands.filter((c) => WRITES.test(c.command))) {
    assert.match(c.enablement ?? '', /\bisWorkspaceTrusted\b/, `${c.command} needs "enablement": "isWorkspaceTrusted"`);
    for (const [menu, entries] of Object.entries(menus)) {
      for (const e of entries.filter((e) => e.command === c.command)) {
        assert.match(e.when ?? '', /\bisWorkspaceTrusted\b/, `${menu} shows ${c.command} without isWorkspaceTrusted in its when clause`);
      }
    }
  }
});

test('settings have a type, a default among their values, and a description', () => {
  const props: Record<string, { type: string; default: unknown; enum?: unknown[]; description?: string; markdownDescription?: string }> = pkg.contributes.configuration.properties;
  assert.ok('tensorWorkbench.backend' in props);
  for (const [key, p] of Object.entries(props)) {
    assert.match(key, /^tensorWorkbench\./);
    assert.ok(p.type, `${key} has no type`);
    assert.ok(p.description || p.markdownDescription, `${key} has no description`);
    if (p.enum) assert.ok(p.enum.includes(p.default), `${key}: default ${String(p.default)} is not one of its values`);
  }
});

test('.vscodeignore keeps sources, tests and node_modules out', () => {
  const lines = readFileSync(join(ROOT, '.vscodeignore'), 'utf8').split('\n').map((l) => l.trim());
  // Everything is excluded first, then only the shipped files are let back in.
  assert.equal(lines.find((l) => l && !l.startsWith('#')), '**');
  for (const shipped of lines.filter((l) => l.startsWith('!'))) {
    assert.doesNotMatch(shipped, /^!(src|test|node_modules|webview|scripts|\.cache|\.bench)\b/);
  }
  assert.ok(lines.includes('dist/*.test.js'));
});

test('Convert to GGUF…: a write command on model folders in the explorer, and in the palette', () => {
  const id = 'tensorWorkbench.convertToGguf';
  const cmd = commands.find((c) => c.command === id);
  assert.ok(cmd, `${id} is not declared`);
  assert.match(cmd.title, /^Convert to GGUF…$/);
  const explorer = (menus['explorer/context'] ?? []).filter((e) => e.command === id);
  assert.equal(explorer.length, 1);
  // Only folders the extension found to hold config.json and safetensors: the key the source sets.
  const src = readFileSync(join(ROOT, 'src', 'vscode', 'convertGgufCommand.ts'), 'utf8');
  const key = /const FOLDERS_KEY = '([^']+)'/.exec(src)?.[1];
  assert.ok(key, 'convertGgufCommand.ts names no context key');
  assert.match(explorer[0].when ?? '', /\bexplorerResourceIsFolder\b/);
  assert.ok((explorer[0].when ?? '').includes(`resourcePath in ${key}`), `the explorer entry is not limited to ${key}`);
  assert.ok((menus.commandPalette ?? []).some((e) => e.command === id && /\bisWorkspaceTrusted\b/.test(e.when ?? '')));
  assert.match(pkg.capabilities.untrustedWorkspaces.description, /convert to GGUF/);
});

test('Merge Models…: a write command on mergekit YAML files in the explorer, registered, and in the palette', () => {
  const id = 'tensorWorkbench.mergeModels';
  const cmd = commands.find((c) => c.command === id);
  assert.ok(cmd, `${id} is not declared`);
  assert.equal(cmd.title, 'Merge Models…');
  assert.match(cmd.enablement ?? '', /\bisWorkspaceTrusted\b/);
  const src = readFileSync(join(ROOT, 'src', 'vscode', 'mergeModelsCommand.ts'), 'utf8');
  assert.ok(src.includes(`const COMMAND = '${id}'`), 'mergeModelsCommand.ts registers another id');
  assert.match(readFileSync(join(ROOT, 'src', 'vscode', 'extension.ts'), 'utf8'), /^\s*MergeModelsCommand\.register\(context\);$/m);
  // Only YAML files the extension found to name a merge_method: the key the source sets.
  const key = /const CONFIGS_KEY = '([^']+)'/.exec(src)?.[1];
  assert.ok(key, 'mergeModelsCommand.ts names no context key');
  const explorer = (menus['explorer/context'] ?? []).filter((e) => e.command === id);
  assert.equal(explorer.length, 1);
  assert.ok((explorer[0].when ?? '').includes(`resourcePath in ${key}`), `the explorer entry is not limited to ${key}`);
  assert.ok((menus.commandPalette ?? []).some((e) => e.command === id && /\bisWorkspaceTrusted\b/.test(e.when ?? '')));
});

test('the default GGUF file type setting offers exactly the types Convert to GGUF… lists', () => {
  const p = pkg.contributes.configuration.properties['tensorWorkbench.convert.defaultFtype'];
  assert.ok(p, 'no tensorWorkbench.convert.defaultFtype setting');
  assert.deepEqual([...p.enum].sort(), [...GGUF_TARGETS].sort());
  assert.ok(p.enum.includes(p.default));
});
