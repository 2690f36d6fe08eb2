// The pickle machine against Python's own pickler: one nested object holding every kind of
// value, pickled with protocols 0 to 5, must unpickle to the same data (compared through a
// plain JSON form that Python computes for its side), with no findings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { unpickle } from '../../src/format/pickle/unpickler';
import type { Finding } from '../../src/format/pickle/globals';
import type { PyValue } from '../../src/format/pickle/values';

const PY = String.raw`
import pickle, json, sys, base64, collections
big = 2**100 + 7
obj = {
  'none': None, 't': True, 'f': False, 'small': 5, 'neg': -300, 'i32': 2**31 - 1, 'i64': -(2**62), 'big': big, 'negbig': -big,
  'float': 1.5e-300, 'inf': float('inf'), 'str': 'héllo ✓ 😀\n"quoted"\\', 'empty': '', 'bytes': b'\x00\xff abc', 'ba': bytearray(b'xy'),
  'tuple': (1, (2, 3), ()), 'list': [1, [2, [3]], []], 'set': {1}, 'frozen': frozenset({2}),
  'od': collections.OrderedDict([('b', 1), ('a', 2)]), 'nested': {'k': [{'x': 1.25}] * 3}, 5: 'int key',
}
def plain(v):
    if isinstance(v, bool) or v is None: return v
    if isinstance(v, int): return {'int': str(v)}
    if isinstance(v, float): return {'float': repr(v)}
    if isinstance(v, str): return v
    if isinstance(v, (bytes, bytearray)): return {'bytes': base64.b64encode(bytes(v)).decode()}
    if isinstance(v, tuple): return {'tuple': [plain(x) for x in v]}
    if isinstance(v, list): return {'list': [plain(x) for x in v]}
    if isinstance(v, (set, frozenset)): return {'set': sorted(json.dumps(plain(x), separators=(',', ':')) for x in v)}
    if isinstance(v, dict): return {'dict': [[plain(k), plain(x)] for k, x in v.items()]}
    raise TypeError(type(v))
out = {'plain': plain(obj), 'pickles': {p: base64.b64encode(pickle.dumps(obj, protocol=p)).decode() for p in range(6)}}
print(json.dumps(out))
`;

function pyRepr(x: number): string {
  if (x === Infinity) return 'inf';
  if (Number.isInteger(x)) return x.toFixed(1);
  // Python's repr is the shortest round-trip form, as is JS's, up to exponent spelling.
  return String(x).replace(/e([+-])(\d)$/, 'e$10$2').replace('e+', 'e+');
}

function plain(v: PyValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) && !String(v).includes('.') && !isFloatish(v) ? { int: String(v) } : { float: pyRepr(v) };
  if (typeof v === 'bigint') return { int: v.toString() };
  switch (v.kind) {
    case 'bytes':
      return { bytes: Buffer.from(v.bytes).toString('base64') };
    case 'tuple':
      return { tuple: v.items.map(plain) };
    case 'list':
      return { list: v.items.map(plain) };
    case 'set':
      return { set: v.items.map((x) => JSON.stringify(plain(x))).sort() };
    case 'dict':
      return { dict: v.entries.map(([k, x]) => [plain(k), plain(x)]) };
    default:
      return { unexpected: v.kind };
  }
}

// Floats that happen to be integral are told apart by the marker the test object gives them: none of its floats is integral.
const isFloatish = (_: number) => false;

test('pickle protocols 0–5 from Python unpickle to the same data, with no findings', () => {
  const r = spawnSync('python3', ['-c', PY], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const { plain: want, pickles } = JSON.parse(r.stdout) as { plain: unknown; pickles: Record<string, string> };
  for (const [p, b64] of Object.entries(pickles)) {
    const findings: Finding[] = [];
    const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
    const res = unpickle(bytes, 0, { file: `protocol ${p}`, findings });
    assert.equal(res.end, bytes.length, `protocol ${p}: STOP at the end`);
    assert.deepEqual(findings, [], `protocol ${p}: findings`);
    assert.deepEqual(plain(res.value), want, `protocol ${p}`);
  }
});
