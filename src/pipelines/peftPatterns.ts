/**
 * PEFT's `rank_pattern` / `alpha_pattern` keys, matched the way PEFT does
 * (`re.match(rf"(.*\.)?({key})$", module)`: the key matches the whole module
 * name, or its tail after a `.`), but in time linear in the name: an adapter
 * config is untrusted input, and a backtracking engine given `(.*.*)*Z` runs for
 * minutes. Keys made only of name characters, `.` and `\.` are compared directly;
 * the others go to RE2 (the `re2js` port: pure JavaScript, no native build). Python
 * syntax that RE2 cannot run in linear time (backreferences, lookaround) is
 * refused with an error naming the key, never matched differently.
 */
import { RE2JS } from 're2js';
import { FormatError } from '../format/errors';

/**
 * Keys per pattern map. PEFT writes one key per module when ranks differ module by
 * module; a 64-expert MoE model with 48 layers has about 10,000 projections.
 */
export const MAX_PATTERN_KEYS = 10_000;

/** Characters per key. Module paths are under 200 characters; RE2's cost grows with the key's length. */
export const MAX_PATTERN_CHARS = 1_000;

/** Characters of a module name matched against the keys: the same reasoning as for the keys. */
export const MAX_MODULE_NAME_CHARS = 1_000;

/**
 * Time all the matching of one adapter may take. Each match is linear, but keys ×
 * modules can still be large, and the viewer runs this on the extension host: past
 * this bound the adapter is refused rather than freezing the window.
 */
export const PATTERN_TIME_LIMIT_MS = 3_000;

// A key of name characters, `.` (any character) and `\.` (a dot) only: compared directly.
const SIMPLE_KEY = /^(?:[A-Za-z0-9_-]|\\\.|\.)+$/;
// In a simple key's compiled form, a position that matches any character but a newline.
const ANY = -1;

function simpleForm(key: string): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < key.length; i++) {
    if (key[i] === '\\') out.push(key.charCodeAt(++i));
    else out.push(key[i] === '.' ? ANY : key.charCodeAt(i));
  }
  return Int32Array.from(out);
}

/** The time bound shared by every pattern map of one adapter. */
export class MatchBudget {
  private readonly deadline: number;
  constructor(
    private readonly file: string,
    readonly limitMs = PATTERN_TIME_LIMIT_MS,
  ) {
    this.deadline = Date.now() + limitMs;
  }

  check(what: string): void {
    if (Date.now() > this.deadline) {
      throw new FormatError('config_invalid', `compiling and matching ${what} took over ${this.limitMs / 1000} s; use fewer or simpler patterns`, this.file);
    }
  }
}

/** Whether a simple key matches the last `key.length` characters of `name`, starting at a `.` boundary. */
function simpleMatch(key: Int32Array, name: string): boolean {
  const at = name.length - key.length;
  if (at < 0 || (at > 0 && name.charCodeAt(at - 1) !== 0x2e)) return false;
  for (let i = 0; i < key.length; i++) {
    const c = name.charCodeAt(at + i);
    if (key[i] === ANY ? c === 0x0a : key[i] !== c) return false;
  }
  return true;
}

/** One map's keys, in the config's order, each compiled on first use. */
export class PatternKeys {
  private readonly compiled = new Map<string, RE2JS>();
  private readonly simple = new Map<string, Int32Array>();

  constructor(
    readonly keys: readonly string[],
    /** `rank_pattern` or `alpha_pattern`, for messages. */
    private readonly what: string,
    private readonly file: string,
  ) {
    if (keys.length > MAX_PATTERN_KEYS) throw new FormatError('config_invalid', `${what} has ${keys.length} keys, above the limit of ${MAX_PATTERN_KEYS}`, file);
    for (const k of keys) {
      if (k.length > MAX_PATTERN_CHARS) throw new FormatError('config_invalid', `${what} key '${k.slice(0, 40)}…' is ${k.length} characters, above the limit of ${MAX_PATTERN_CHARS}`, file);
      if (SIMPLE_KEY.test(k)) this.simple.set(k, simpleForm(k));
    }
  }

  private regex(key: string): RE2JS {
    let re = this.compiled.get(key);
    if (!re) {
      re = compileKey(key, this.what, this.file);
      this.compiled.set(key, re);
    }
    return re;
  }

  /** The first key that matches `module`, as PEFT picks it; undefined when none does. */
  keyFor(module: string, budget?: MatchBudget): string | undefined {
    if (this.keys.length === 0) return undefined;
    if (module.length > MAX_MODULE_NAME_CHARS) {
      throw new FormatError('config_invalid', `module name '${module.slice(0, 40)}…' is ${module.length} characters, above the limit of ${MAX_MODULE_NAME_CHARS} for matching ${this.what}`, this.file);
    }
    // The direct comparison assumes the prefix before a `.` has no newline, which `.*` would not cross.
    const direct = !module.includes('\n');
    for (const key of this.keys) {
      const form = direct ? this.simple.get(key) : undefined;
      if (form ? simpleMatch(form, module) : this.regex(key).testExact(module)) return key;
      budget?.check(this.what);
    }
    return undefined;
  }

  /** Compiles every key now, so that a key RE2 cannot run is reported even if no module reaches it. */
  validate(budget?: MatchBudget): this {
    for (const k of this.keys) {
      if (!this.simple.has(k)) this.regex(k);
      budget?.check(this.what);
    }
    return this;
  }
}

/**
 * PEFT's `(.*\.)?(key)$` under `re.match`, which anchors at the start: as an RE2
 * full match. A `^` inside the key still means the start of the name, as in Python.
 */
function compileKey(key: string, what: string, file: string): RE2JS {
  // Python reads `[[:alpha:]]` as a set of `[:alph` then `]`; RE2 as a POSIX class. Rather than match differently, refuse it.
  if (/\[[^\]]*\[:/.test(key) || key.startsWith('[:')) throw unsupportedKey(key, what, file, 'POSIX classes like [:alpha:] mean something else in Python');
  try {
    // Alone first: a key like `a)|(b` would otherwise break out of the group it is put in.
    RE2JS.compile(key);
    return RE2JS.compile(`(?:.*\\.)?(?:${key})`);
  } catch (e) {
    throw unsupportedKey(key, what, file, (e as Error).message);
  }
}

function unsupportedKey(key: string, what: string, file: string, why: string): FormatError {
  return new FormatError(
    'config_invalid',
    `${what} key '${key}' is not a pattern that can be matched in linear time (backreferences, lookaround, \\Z and other Python-only syntax are refused): ${why}`,
    file,
  );
}
