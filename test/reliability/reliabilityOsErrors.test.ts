// The operating system's refusals about the user's paths (read-only file system, disk full,
// a file where a folder should be, a folder where a file should be) are bad input: exit 2,
// one line with a code and the path, and nothing left behind. Exit 1 is for our own bugs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, llama, mountTmpfs, peftAdapter, remountReadOnly, snapshot, temps, unmount } from './harness';

let root = '';

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tw-rel-os-'));
  await llama(join(root, 'in'));
  await peftAdapter(join(root, 'ad'));
  writeFileSync(join(root, 'afile'), 'not a folder');
  mkdirSync(join(root, 'adir.safetensors'));
});

after(() => rmSync(root, { recursive: true, force: true }));

/** One writer per command, to an output `out` (a .safetensors file, a .gguf file or a folder). */
function writers(out: (kind: 'file' | 'gguf' | 'dir') => string): [string, string[]][] {
  return [
    ['convert to a file', ['convert', 'in', out('file'), '--dtype', 'f32']],
    ['convert to a folder', ['convert', 'in', out('dir'), '--dtype', 'f32']],
    ['quantize to gguf', ['quantize', 'in', out('gguf'), '--scheme', 'q8_0', '--backend', 'cpu']],
    ['quantize to a folder', ['quantize', 'in', out('dir'), '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu']],
    ['merge to a file', ['merge', 'in', 'ad', out('file'), '--backend', 'cpu', '--dtype', 'f32']],
    ['merge to a folder', ['merge', 'in', 'ad', out('dir'), '--backend', 'cpu', '--dtype', 'f32']],
  ];
}

function assertBadInput(r: ReturnType<typeof cli>, code: string, path: string): void {
  assert.equal(r.code, 2, `exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], new RegExp(`^error\\[${code}\\]: `));
  assert.ok(lines[0].includes(path), `the message does not name ${path}: ${lines[0]}`);
}

describe('a file where a folder should be: not_a_folder', () => {
  for (const [what, argv] of writers((k) => (k === 'file' ? 'afile/sub/o.safetensors' : k === 'gguf' ? 'afile/o.gguf' : 'afile/sub'))) {
    test(what, () => {
      const before = snapshot(root);
      assertBadInput(cli(root, ...argv), 'not_a_folder', 'afile');
      assert.deepEqual(snapshot(root), before);
    });
  }
});

describe('a folder where the output file should be: is_a_folder, no temporary left', () => {
  for (const [what, argv] of writers((k) => (k === 'file' ? 'adir.safetensors' : k === 'gguf' ? 'adir.safetensors/x.gguf' : 'adir.safetensors/x'))) {
    if (!argv.includes('adir.safetensors')) continue;
    test(what, () => {
      const before = snapshot(root);
      assertBadInput(cli(root, ...argv), 'is_a_folder', 'adir.safetensors');
      assert.deepEqual(snapshot(root), before);
      assert.deepEqual(temps(root), []);
    });
  }
});

describe('a read-only file system: read_only', () => {
  const ro = () => join(root, 'ro');
  let skip: string | undefined;
  before(() => {
    skip = mountTmpfs(ro(), '4m');
    if (!skip) {
      mkdirSync(join(ro(), 'existing'));
      skip = remountReadOnly(ro());
    }
    if (skip) process.stdout.write(`# read-only cases skipped: ${skip}\n`);
  });
  after(() => unmount(ro()));
  const cases = [
    ...writers((k) => (k === 'file' ? 'ro/existing/o.safetensors' : k === 'gguf' ? 'ro/existing/o.gguf' : 'ro/existing')),
    ...writers((k) => (k === 'file' ? 'ro/new/o.safetensors' : k === 'gguf' ? 'ro/new/o.gguf' : 'ro/new/sub')).map(([w, a]) => [`${w} (missing folder)`, a] as [string, string[]]),
  ];
  for (const [what, argv] of cases) {
    test(what, (t) => {
      if (skip) return t.skip(skip);
      const r = cli(root, ...argv);
      assertBadInput(r, 'read_only', 'ro/');
      assert.deepEqual(readdirSync(ro()), ['existing']);
      assert.deepEqual(readdirSync(join(ro(), 'existing')), []);
    });
  }
});

describe('a full disk: disk_full, and nothing left behind', () => {
  const full = () => join(root, 'full');
  let skip: string | undefined;
  before(() => {
    // 128 KiB: less than any of the outputs (the tiny model is 420 KiB of BF16; q8_0 GGUF about 260 KiB).
    skip = mountTmpfs(full(), '128k');
    if (skip) process.stdout.write(`# disk-full cases skipped: ${skip}\n`);
  });
  after(() => unmount(full()));
  for (const [what, argv] of writers((k) => (k === 'file' ? 'full/a/o.safetensors' : k === 'gguf' ? 'full/a/o.gguf' : 'full/a/b'))) {
    test(what, (t) => {
      if (skip) return t.skip(skip);
      const r = cli(root, ...argv);
      assertBadInput(r, 'disk_full', 'full/a');
      // The temporaries and the folders this run created are gone: the disk is as it was.
      assert.deepEqual(readdirSync(full()), []);
    });
  }
});
