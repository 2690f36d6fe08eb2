// Hostile pickles and containers: every trick is flagged, nothing runs (a canary file that
// each payload would create never appears), and malformed input is one clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../../src/format/errors';
import { MemorySource } from '../../src/format/source';
import { readTorchCheckpoint } from '../../src/format/pickle/torch';
import { layoutOf, verdictOf } from '../../src/format/pickle/layout';
import { cleanTensorPickle, P, torchZip, zip } from './pickleBuilder';
import { torchAvailable } from './torchFixtures';

const CLI = join(__dirname, 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'tw-hostile-'));
const CANARY = join(dir, 'CANARY');
const f32 = (n: number) => new Uint8Array(new Float32Array(Array.from({ length: n }, (_, i) => i)).buffer);

async function scan(bytes: Uint8Array) {
  const ckpt = await readTorchCheckpoint(new MemorySource(bytes, 'hostile.pt'));
  return { ckpt, verdict: verdictOf(ckpt), names: ckpt.findings.map((f) => `${f.module}.${f.name}`) };
}

function withPayload(payload: (p: P) => P): Uint8Array {
  // {'w': tensor, 'x': payload}
  const p = cleanTensorPickle('w', 4).str('x');
  return torchZip(payload(p).op(0x73).stop().build(), { '0': f32(4) });
}

const system = (p: P) => p.global('posix', 'system').mark().str(`touch ${CANARY}`).tuple().reduce();

const CASES: { name: string; bytes: () => Uint8Array; expect: string[] }[] = [
  { name: 'REDUCE of posix.system', bytes: () => withPayload(system), expect: ['posix.system'] },
  {
    name: 'STACK_GLOBAL from memoised strings',
    bytes: () => withPayload((p) => p.str('o').put(50).op(0x94 - 0x94 + 0x30).str('os').str('system').op(0x93).mark().str(`touch ${CANARY}`).tuple().reduce()),
    expect: ['os.system'],
  },
  {
    name: 'getattr(__import__("os"), "system")',
    bytes: () =>
      withPayload((p) =>
        p.global('builtins', 'getattr').mark().global('builtins', '__import__').mark().str('os').tuple().reduce().str('system').tuple().reduce().mark().str(`touch ${CANARY}`).tuple().reduce(),
      ),
    expect: ['builtins.getattr', 'builtins.__import__'],
  },
  { name: 'INST subprocess.Popen', bytes: () => withPayload((p) => p.mark().str(`touch ${CANARY}`).op(0x69).text('subprocess\nPopen\n')), expect: ['subprocess.Popen'] },
  { name: 'OBJ of runpy._run_code', bytes: () => withPayload((p) => p.mark().global('runpy', '_run_code').str('x').op(0x6f)), expect: ['runpy._run_code'] },
  { name: 'NEWOBJ of webbrowser.open', bytes: () => withPayload((p) => p.global('webbrowser', 'open').mark().str('http://127.0.0.1/').tuple().op(0x81)), expect: ['webbrowser.open'] },
  { name: 'an extension-registry code', bytes: () => withPayload((p) => p.op(0x82, 7).op(0x29).reduce()), expect: ['copyreg.extension code 7'] },
  { name: 'Python 2 module names', bytes: () => withPayload((p) => p.global('__builtin__', 'eval').mark().str('1').tuple().reduce()), expect: ['__builtin__.eval'] },
  {
    name: 'a nested pickle in torch.storage._load_from_bytes',
    bytes: () => {
      const inner = new P().proto(2).global('os', 'system').mark().str(`touch ${CANARY}`).tuple().reduce().stop().build();
      return withPayload((p) => p.global('torch.storage', '_load_from_bytes').mark().bytes(inner).tuple().reduce());
    },
    expect: ['os.system'],
  },
  {
    name: 'a second data.pkl hidden in the archive',
    bytes: () => {
      const evil = new P().proto(2).global('os', 'system').mark().str('x').tuple().reduce().stop().build();
      return torchZip(cleanTensorPickle('w', 4).stop().build(), { '0': f32(4) }, [{ name: 'other/data.pkl', data: evil }]);
    },
    expect: ['<zip>.2 data.pkl entries (a second pickle hidden in the archive)'],
  },
  {
    name: 'an entry name that leaves the archive',
    bytes: () => torchZip(cleanTensorPickle('w', 4).stop().build(), { '0': f32(4) }, [{ name: '../../etc/evil', data: new Uint8Array(1) }]),
    expect: ["<zip>.entry with a path outside the archive '../../etc/evil'"],
  },
];

for (const c of CASES) {
  test(`hostile: ${c.name} is flagged, not run`, async () => {
    const { verdict, names } = await scan(c.bytes());
    assert.equal(verdict.clean, false);
    for (const e of c.expect) assert.ok(names.includes(e), `expected ${e} among ${names.join(', ')}`);
    assert.equal(existsSync(CANARY), false);
  });
}

test('hostile: the CLI scan exits 3, inspect warns, convert refuses without --allow-unsafe-globals; nothing runs', () => {
  const path = join(dir, 'evil.pt');
  writeFileSync(path, withPayload(system));
  const s = spawnSync(process.execPath, [CLI, 'scan', path], { encoding: 'utf8' });
  assert.equal(s.status, 3, s.stderr);
  assert.match(s.stdout, /DANGEROUS {2}posix\.system/);
  const i = spawnSync(process.execPath, [CLI, 'inspect', path], { encoding: 'utf8' });
  assert.equal(i.status, 0, i.stderr);
  assert.match(i.stdout, /WARNING: this file calls 1 function that is not tensor rebuilds/);
  const c = spawnSync(process.execPath, [CLI, 'convert', path, join(dir, 'evil.safetensors')], { encoding: 'utf8' });
  assert.equal(c.status, 2);
  assert.match(c.stderr, /^error\[unsafe_globals\]/);
  assert.equal(existsSync(join(dir, 'evil.safetensors')), false);
  const forced = spawnSync(process.execPath, [CLI, 'convert', path, join(dir, 'evil.safetensors'), '--allow-unsafe-globals'], { encoding: 'utf8' });
  assert.equal(forced.status, 0, forced.stderr);
  assert.equal(existsSync(CANARY), false);
});

test('hostile: a checkpoint made by torch.save with a __reduce__ payload is flagged and never runs', { skip: !torchAvailable() && 'python3 with torch is not installed' }, () => {
  const path = join(dir, 'reduce.pt');
  const canary = join(dir, 'CANARY2');
  const py = `
import os, torch
class Evil:
    def __reduce__(self):
        return (os.system, (${JSON.stringify(`touch ${canary}`)},))
torch.save({'w': torch.zeros(3), 'evil': Evil()}, ${JSON.stringify(path)})`;
  const r = spawnSync('python3', ['-c', py], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const s = spawnSync(process.execPath, [CLI, 'scan', path, '--json'], { encoding: 'utf8' });
  assert.equal(s.status, 3, s.stderr);
  const res = JSON.parse(s.stdout) as { findings: { module: string; name: string; severity: string }[] };
  assert.deepEqual(res.findings.map((f) => [f.module, f.name, f.severity]), [['posix', 'system', 'dangerous']]);
  spawnSync(process.execPath, [CLI, 'inspect', path], { encoding: 'utf8' });
  spawnSync(process.execPath, [CLI, 'convert', path, join(dir, 'reduce.safetensors'), '--allow-unsafe-globals'], { encoding: 'utf8' });
  assert.equal(existsSync(canary), false);
});

const MALFORMED: { name: string; bytes: () => Uint8Array; code: string }[] = [
  { name: 'memo GET of a key never stored', bytes: () => torchZip(new P().proto(2).get(9).stop().build()), code: 'pickle_invalid' },
  { name: 'a pickle without STOP', bytes: () => torchZip(new P().proto(2).op(0x7d).build()), code: 'pickle_invalid' },
  { name: 'an unknown opcode', bytes: () => torchZip(new P().proto(2).op(0xff).stop().build()), code: 'pickle_invalid' },
  { name: 'BINUNICODE longer than the pickle', bytes: () => torchZip(new P().proto(2).op(0x58, 0xff, 0xff, 0xff, 0x7f).stop().build()), code: 'pickle_invalid' },
  { name: 'BINUNICODE8 with a 2^63 length', bytes: () => torchZip(new P().proto(4).op(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80).stop().build()), code: 'pickle_invalid' },
  { name: 'a truncated central directory', bytes: () => zip([{ name: 'a/data.pkl', data: new P().proto(2).op(0x4e).stop().build() }], { truncateCentral: 20 }), code: 'zip_invalid' },
  { name: 'a local header whose name differs', bytes: () => zip([{ name: 'a/data.pkl', localName: 'a/evil.pkl', data: new P().proto(2).op(0x4e).stop().build() }]), code: 'zip_invalid' },
  { name: 'a storage larger than its entry', bytes: () => torchZip(cleanTensorPickle('w', 1000).stop().build(), { '0': f32(4) }), code: 'size_mismatch' },
  { name: 'a storage the archive lacks', bytes: () => torchZip(cleanTensorPickle('w', 4).stop().build()), code: 'truncated' },
  { name: 'a persistent id that is not a storage', bytes: () => torchZip(new P().proto(2).str('x').op(0x51).stop().build()), code: 'pickle_invalid' },
];

for (const c of MALFORMED) {
  test(`malformed: ${c.name} is error[${c.code}]`, async () => {
    await assert.rejects(readTorchCheckpoint(new MemorySource(c.bytes(), 'bad.pt')), (e: unknown) => e instanceof FormatError && e.code === c.code);
  });
}

test('bounded: a 200,000-deep nesting and a self-referencing list neither overflow nor hang', async () => {
  const deep = new P().proto(2);
  for (let i = 0; i < 200_000; i++) deep.op(0x5d); // EMPTY_LIST
  for (let i = 0; i < 199_999; i++) deep.op(0x61); // APPEND
  const t0 = Date.now();
  const { ckpt } = await scan(torchZip(deep.stop().build()));
  assert.equal(layoutOf(ckpt.root).tensors.length, 0);
  // A list that contains itself 30 times over, 30 levels deep: 30^30 paths if walked naively.
  const laughs = new P().proto(2).op(0x5d).put(0);
  for (let i = 0; i < 30; i++) laughs.mark().get(0).get(0).get(0).op(0x65);
  const r2 = await scan(torchZip(laughs.stop().build()));
  assert.equal(layoutOf(r2.ckpt.root).tensors.length, 0);
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
});
