import { FormatError } from '../errors';
import { allowed, callAllowed, classify, type Finding } from './globals';
import { isKind, tuple, type PyDict, type PyGlobal, type PyValue } from './values';

/**
 * A pickle machine that builds data and never calls anything. It implements every
 * opcode of protocols 0 to 5. A global is a (module, name) pair; one that is not on
 * the allowlist (./globals.ts) becomes a finding, and a call of it an opaque value.
 * Each opcode consumes at least one byte and does O(1) work (MARK-delimited opcodes pay
 * for what they pop, once), so time is linear in the pickle's length; the stack, the
 * memo and every length are bounded before anything is allocated.
 */

/** Stack depth bound: real checkpoints stay in the thousands; a crafted file must not grow memory without end. */
const MAX_STACK = 1_000_000;
/** Memo entries: one per PUT/MEMOIZE; a 100,000-tensor checkpoint uses a few hundred thousand. */
const MAX_MEMO = 4_000_000;
/** Text-opcode lines (protocol 0 ints, floats, globals): nothing legitimate is longer. */
const MAX_LINE = 1 << 16;

export interface UnpickleOptions {
  /** Turns a persistent id (BINPERSID/PERSID) into a value; without it, persistent ids are refused. */
  persistentLoad?(pid: PyValue, offset: number): PyValue;
  /** Findings are appended here (non-allowlisted globals, extension codes). */
  findings: Finding[];
  /** Name for error messages. */
  file: string;
  /** Wall-clock deadline (Date.now() value); a pickle that takes longer is refused. */
  deadline?: number;
  /** Nesting depth, for pickles inside pickles (torch.storage._load_from_bytes). */
  depth?: number;
}

export interface UnpickleResult {
  readonly value: PyValue;
  /** Offset just past the STOP opcode. */
  readonly end: number;
  /** Highest protocol announced (0 when there was no PROTO opcode). */
  readonly protocol: number;
}

/** Thrown when the bytes end before STOP: the caller may retry with a longer window. */
export class PickleTruncated extends FormatError {
  constructor(file: string) {
    super('pickle_invalid', 'the pickle ends before its STOP opcode', file);
  }
}

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

const td = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

class Machine {
  private pos: number;
  private readonly stack: Slot[] = [];
  private readonly memo = new Map<number, PyValue>();
  private protocol = 0;
  private steps = 0;

  constructor(
    private readonly b: Uint8Array,
    start: number,
    private readonly opts: UnpickleOptions,
  ) {
    this.pos = start;
  }

  private fail(message: string, at = this.pos): never {
    throw new FormatError('pickle_invalid', `at byte ${at}: ${message}`, this.opts.file);
  }

  private need(n: number): void {
    if (n > this.b.length - this.pos) throw new PickleTruncated(this.opts.file);
  }

  private u8(): number {
    this.need(1);
    return this.b[this.pos++];
  }

  private le(n: 1 | 2 | 4): number {
    this.need(n);
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + this.b[this.pos + i];
    this.pos += n;
    return v;
  }

  /** An 8-byte little-endian length, refused when it cannot fit in what remains. */
  private len8(): number {
    this.need(8);
    const dv = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 8);
    const v = dv.getBigUint64(0, true);
    this.pos += 8;
    if (v > BigInt(this.b.length - this.pos)) throw new PickleTruncated(this.opts.file);
    return Number(v);
  }

  private bytes(n: number): Uint8Array {
    if (n < 0) this.fail('negative length');
    this.need(n);
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private line(): string {
    const end = this.b.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleTruncated(this.opts.file);
    if (end - this.pos > MAX_LINE) this.fail(`a text line longer than ${MAX_LINE} bytes`);
    const s = latin1.decode(this.b.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }

  private utf8(n: number): string {
    const raw = this.bytes(n);
    try {
      return td.decode(raw);
    } catch {
      // Python's pickle writes surrogates with 'surrogatepass'; keep them visible instead of failing.
      return new TextDecoder('utf-8').decode(raw);
    }
  }

  private push(v: Slot): void {
    if (this.stack.length >= MAX_STACK) this.fail(`the stack grew past ${MAX_STACK} items`);
    this.stack.push(v);
  }

  private pop(): PyValue {
    const v = this.stack.pop();
    if (v === undefined) this.fail('pop from an empty stack');
    if (v === MARK) this.fail('a MARK where a value was expected');
    return v;
  }

  private top(): PyValue {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined || v === MARK) this.fail('no value on the stack');
    return v;
  }

  /** Pops everything above the topmost MARK, and the MARK. */
  private popMark(): PyValue[] {
    let i = this.stack.length - 1;
    while (i >= 0 && this.stack[i] !== MARK) i--;
    if (i < 0) this.fail('no MARK on the stack');
    const items = this.stack.splice(i + 1) as PyValue[];
    this.stack.pop();
    return items;
  }

  private memoPut(key: number, v: PyValue): void {
    if (!this.memo.has(key) && this.memo.size >= MAX_MEMO) this.fail(`the memo grew past ${MAX_MEMO} entries`);
    this.memo.set(key, v);
  }

  private memoGet(key: number): PyValue {
    const v = this.memo.get(key);
    if (v === undefined && !this.memo.has(key)) this.fail(`memo key ${key} was never stored`);
    return v as PyValue;
  }

  private global(module: string, name: string, at: number): PyGlobal {
    const g: PyGlobal = { kind: 'global', module, name, offset: at };
    if (!allowed(g)) this.opts.findings.push(classify(g, this.opts.depth ?? 0));
    return g;
  }

  /** A call: evaluated when the callable is modelled, else kept as an opaque call. */
  private call(callable: PyValue, args: PyValue, at: number): PyValue {
    if (isKind(callable, 'global') && allowed(callable)) {
      const r = callAllowed(callable, args, { file: this.opts.file, at, findings: this.opts.findings, depth: this.opts.depth ?? 0, deadline: this.opts.deadline });
      if (r !== undefined) return r;
    }
    return { kind: 'call', callable, args, state: [], offset: at };
  }

  private setItems(d: PyValue, kv: PyValue[]): void {
    if (kv.length % 2 !== 0) this.fail('SETITEMS with an odd number of items');
    if (isKind(d, 'dict')) {
      for (let i = 0; i < kv.length; i += 2) setEntry(d, kv[i], kv[i + 1]);
    } else if (isKind(d, 'call')) {
      d.state.push(tuple(kv)); // __setitem__ on something unmodelled: kept as data
    } else this.fail('SETITEM on something that is not a dict');
  }

  private appendItems(l: PyValue, items: PyValue[]): void {
    if (isKind(l, 'list') || isKind(l, 'set')) for (const x of items) l.items.push(x);
    else if (isKind(l, 'call')) l.state.push(tuple(items));
    else this.fail('APPEND on something that is not a list');
  }

  private build(obj: PyValue, state: PyValue): void {
    if (isKind(obj, 'call') || isKind(obj, 'object')) obj.state.push(state);
    else if (isKind(obj, 'dict') && isKind(state, 'dict')) for (const [k, v] of state.entries) setEntry(obj, k, v);
    // A BUILD on a rebuilt tensor carries Python attributes (requires_grad hooks…): not data we show.
  }

  run(): UnpickleResult {
    const deadline = this.opts.deadline ?? Infinity;
    for (;;) {
      if ((++this.steps & 0xffff) === 0 && Date.now() > deadline) this.fail('took longer than the time allowed for one file');
      const at = this.pos;
      const op = this.u8();
      if (op === 0x2e) {
        // STOP
        const value = this.pop();
        return { value, end: this.pos, protocol: this.protocol };
      }
      this.step(op, at);
    }
  }

  // One big switch is the clearest form of an opcode table: each case is one line or two.
  private step(op: number, at: number): void {
    switch (op) {
      case 0x80: this.protocol = this.u8(); if (this.protocol > 5) this.fail(`unsupported protocol ${this.protocol}`, at); return; // PROTO
      case 0x95: this.len8(); return; // FRAME: a length hint only
      case 0x28: this.push(MARK); return;
      case 0x30: this.pop(); return; // POP
      case 0x31: this.popMark(); return; // POP_MARK
      case 0x32: this.push(this.top()); return; // DUP
      case 0x4e: this.push(null); return;
      case 0x88: this.push(true); return;
      case 0x89: this.push(false); return;
      case 0x49: this.push(parseIntLine(this.line(), (m) => this.fail(m, at))); return; // INT
      case 0x4a: { this.need(4); const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getInt32(0, true); this.pos += 4; this.push(v); return; } // BININT
      case 0x4b: this.push(this.le(1)); return; // BININT1
      case 0x4d: this.push(this.le(2)); return; // BININT2
      case 0x4c: this.push(parseLongLine(this.line(), (m) => this.fail(m, at))); return; // LONG
      case 0x8a: this.push(longLE(this.bytes(this.le(1)))); return; // LONG1
      case 0x8b: this.push(longLE(this.bytes(this.le(4)))); return; // LONG4
      case 0x46: this.push(parseFloatLine(this.line(), (m) => this.fail(m, at))); return; // FLOAT
      case 0x47: { this.need(8); const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 8).getFloat64(0, false); this.pos += 8; this.push(v); return; } // BINFLOAT
      case 0x53: this.push(parseQuoted(this.line(), (m) => this.fail(m, at))); return; // STRING
      case 0x54: this.push(latin1.decode(this.bytes(this.le(4)))); return; // BINSTRING
      case 0x55: this.push(latin1.decode(this.bytes(this.le(1)))); return; // SHORT_BINSTRING
      case 0x56: this.push(rawUnicodeEscape(this.line())); return; // UNICODE
      case 0x58: this.push(this.utf8(this.le(4))); return; // BINUNICODE
      case 0x8c: this.push(this.utf8(this.le(1))); return; // SHORT_BINUNICODE
      case 0x8d: this.push(this.utf8(this.len8())); return; // BINUNICODE8
      case 0x42: this.push({ kind: 'bytes', bytes: this.bytes(this.le(4)) }); return; // BINBYTES
      case 0x43: this.push({ kind: 'bytes', bytes: this.bytes(this.le(1)) }); return; // SHORT_BINBYTES
      case 0x8e: this.push({ kind: 'bytes', bytes: this.bytes(this.len8()) }); return; // BINBYTES8
      case 0x96: this.push({ kind: 'bytes', bytes: this.bytes(this.len8()) }); return; // BYTEARRAY8
      case 0x97: this.fail('NEXT_BUFFER needs out-of-band buffers, which a file cannot carry', at); return;
      case 0x98: return; // READONLY_BUFFER: no effect on data
      case 0x29: this.push(tuple([])); return; // EMPTY_TUPLE
      case 0x74: this.push(tuple(this.popMark())); return; // TUPLE
      case 0x85: this.push(tuple([this.pop()])); return;
      case 0x86: { const b = this.pop(); const a = this.pop(); this.push(tuple([a, b])); return; }
      case 0x87: { const c = this.pop(); const b = this.pop(); const a = this.pop(); this.push(tuple([a, b, c])); return; }
      case 0x5d: this.push({ kind: 'list', items: [] }); return; // EMPTY_LIST
      case 0x6c: this.push({ kind: 'list', items: this.popMark() }); return; // LIST
      case 0x61: { const x = this.pop(); this.appendItems(this.top(), [x]); return; } // APPEND
      case 0x65: { const xs = this.popMark(); this.appendItems(this.top(), xs); return; } // APPENDS
      case 0x7d: this.push(newDict()); return; // EMPTY_DICT
      case 0x64: { const d = newDict(); this.setItems(d, this.popMark()); this.push(d); return; } // DICT
      case 0x73: { const v = this.pop(); const k = this.pop(); this.setItems(this.top(), [k, v]); return; } // SETITEM
      case 0x75: { const kv = this.popMark(); this.setItems(this.top(), kv); return; } // SETITEMS
      case 0x8f: this.push({ kind: 'set', items: [], frozen: false }); return; // EMPTY_SET
      case 0x90: { const xs = this.popMark(); this.appendItems(this.top(), xs); return; } // ADDITEMS
      case 0x91: this.push({ kind: 'set', items: this.popMark(), frozen: true }); return; // FROZENSET
      case 0x67: this.push(this.memoGet(parseIndexLine(this.line(), (m) => this.fail(m, at)))); return; // GET
      case 0x68: this.push(this.memoGet(this.le(1))); return; // BINGET
      case 0x6a: this.push(this.memoGet(this.le(4))); return; // LONG_BINGET
      case 0x70: this.memoPut(parseIndexLine(this.line(), (m) => this.fail(m, at)), this.top()); return; // PUT
      case 0x71: this.memoPut(this.le(1), this.top()); return; // BINPUT
      case 0x72: this.memoPut(this.le(4), this.top()); return; // LONG_BINPUT
      case 0x94: this.memoPut(this.memo.size, this.top()); return; // MEMOIZE
      case 0x63: { const m = this.line(); const n = this.line(); this.push(this.global(m, n, at)); return; } // GLOBAL
      case 0x93: { const n = this.pop(); const m = this.pop(); if (typeof m !== 'string' || typeof n !== 'string') this.fail('STACK_GLOBAL needs two strings', at); this.push(this.global(m, n, at)); return; }
      case 0x82: case 0x83: case 0x84: { const code = this.le(op === 0x82 ? 1 : op === 0x83 ? 2 : 4); this.opts.findings.push({ module: 'copyreg', name: `extension code ${code}`, offset: at, severity: 'dangerous', nested: (this.opts.depth ?? 0) > 0 }); this.push({ kind: 'global', module: 'copyreg', name: `extension code ${code}`, offset: at }); return; }
      case 0x52: { const args = this.pop(); const f = this.pop(); this.push(this.call(f, args, at)); return; } // REDUCE
      case 0x81: { const args = this.pop(); const cls = this.pop(); this.push(this.call(cls, args, at)); return; } // NEWOBJ
      case 0x92: { const kw = this.pop(); const args = this.pop(); const cls = this.pop(); this.push(this.call(cls, tuple([args, kw]), at)); return; } // NEWOBJ_EX
      case 0x69: { const m = this.line(); const n = this.line(); const args = this.popMark(); this.push(this.call(this.global(m, n, at), tuple(args), at)); return; } // INST
      case 0x6f: { const items = this.popMark(); if (items.length === 0) this.fail('OBJ without a class', at); this.push(this.call(items[0], tuple(items.slice(1)), at)); return; } // OBJ
      case 0x62: { const state = this.pop(); this.build(this.top(), state); return; } // BUILD
      case 0x50: this.push(this.persistent(this.line(), at)); return; // PERSID
      case 0x51: this.push(this.persistent(this.pop(), at)); return; // BINPERSID
      default:
        this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`, at);
    }
  }

  private persistent(pid: PyValue, at: number): PyValue {
    if (!this.opts.persistentLoad) this.fail('a persistent id outside a torch container', at);
    return this.opts.persistentLoad(pid, at);
  }
}

function newDict(): PyDict {
  return { kind: 'dict', entries: [], ordered: false };
}

/** Python dict assignment: a key seen before keeps its place and takes the new value. */
export function setEntry(d: PyDict, k: PyValue, v: PyValue): void {
  if (typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean' || k === null) {
    for (const e of d.entries) {
      if (e[0] === k) {
        e[1] = v;
        return;
      }
    }
  }
  d.entries.push([k, v]);
}

function parseIntLine(s: string, fail: (m: string) => never): PyValue {
  if (s === '01') return true;
  if (s === '00') return false;
  return parseLongLine(s, fail);
}

function parseLongLine(s: string, fail: (m: string) => never): PyValue {
  const t = s.endsWith('L') ? s.slice(0, -1) : s;
  if (!/^[-+]?\d+$/.test(t)) fail(`'${t.slice(0, 40)}' is not an integer`);
  const v = BigInt(t);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Protocol 0 FLOAT: Python's repr of a float ('1.5', '1e-300', 'inf', '-inf', 'nan'). */
function parseFloatLine(s: string, fail: (m: string) => never): number {
  const t = s.trim().toLowerCase();
  if (t === 'inf' || t === '+inf') return Infinity;
  if (t === '-inf') return -Infinity;
  if (t === 'nan' || t === '-nan') return NaN;
  const v = Number(t);
  if (t === '' || Number.isNaN(v)) fail(`'${s.slice(0, 40)}' is not a float`);
  return v;
}

function parseIndexLine(s: string, fail: (m: string) => never): number {
  if (!/^\d{1,10}$/.test(s)) fail(`'${s.slice(0, 40)}' is not a memo index`);
  return Number(s);
}

/** Two's-complement little-endian integer of any length (LONG1/LONG4). */
function longLE(b: Uint8Array): PyValue {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Protocol 0 STRING: a Python repr in single or double quotes, with backslash escapes. */
function parseQuoted(s: string, fail: (m: string) => never): string {
  const q = s[0];
  if ((q !== "'" && q !== '"') || s.length < 2 || s[s.length - 1] !== q) fail('STRING is not quoted');
  const body = s.slice(1, -1);
  return body.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8));
    const map: Record<string, string> = { n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' };
    return map[e] ?? '\\' + e;
  });
}

/** Protocol 0 UNICODE: raw-unicode-escape (\uXXXX and \UXXXXXXXX only). */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string | undefined, b: string | undefined) => {
    const cp = parseInt(a ?? b ?? '0', 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
  });
}

/** Runs one pickle starting at `start`. Throws FormatError('pickle_invalid') on malformed input. */
export function unpickle(bytes: Uint8Array, start: number, opts: UnpickleOptions): UnpickleResult {
  return new Machine(bytes, start, opts).run();
}
