import { FormatError } from '../errors';
import { asInt, isKind, itemsOf, type PyGlobal, type PyStorage, type PyTensor, type PyValue, type TorchDType } from './values';

/**
 * The globals a weights-only checkpoint needs, modelled as data builders (never
 * imported, never called), and the verdict on every other global. The set follows the
 * shape of PyTorch's weights-only unpickler: tensor rebuilds, typed storages, dtypes,
 * `torch.Size`, `OrderedDict`, and the builtins pickle itself uses for sets and bytes.
 */

export interface Finding {
  readonly module: string;
  readonly name: string;
  /** Byte offset of the opcode within its pickle. */
  readonly offset: number;
  /** 'dangerous': runs code, touches files, processes or the network; 'unknown': anything else not modelled. */
  readonly severity: 'dangerous' | 'unknown';
  /** Inside a pickle nested in the checkpoint (torch.storage._load_from_bytes). */
  readonly nested: boolean;
  /** Where in the container the pickle is (zip entry name), filled in by the container reader. */
  readonly entry?: string;
}

/** Storage classes → element type. `torch.cuda.*Storage` only says where the tensor lived. */
const STORAGES: Record<string, TorchDType> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8',
  BoolStorage: 'BOOL', ComplexFloatStorage: 'C64', ComplexDoubleStorage: 'C128',
  QInt8Storage: 'QI8', QUInt8Storage: 'QU8', QInt32Storage: 'QI32', QUInt4x2Storage: 'QU4x2', QUInt2x4Storage: 'QU2x4',
  UntypedStorage: 'U8', _UntypedStorage: 'U8',
};

/** torch dtype objects (pickled as globals of the torch module) → element type. */
const DTYPES: Record<string, TorchDType> = {
  float64: 'F64', double: 'F64', float32: 'F32', float: 'F32', float16: 'F16', half: 'F16', bfloat16: 'BF16',
  int64: 'I64', long: 'I64', int32: 'I32', int: 'I32', int16: 'I16', short: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
  complex64: 'C64', cfloat: 'C64', complex128: 'C128', cdouble: 'C128', uint16: 'U16', uint32: 'U32', uint64: 'U64',
  float8_e4m3fn: 'F8_E4M3', float8_e5m2: 'F8_E5M2', float8_e4m3fnuz: 'F8_E4M3FNUZ', float8_e5m2fnuz: 'F8_E5M2FNUZ', float8_e8m0fnu: 'F8_E8M0',
  qint8: 'QI8', quint8: 'QU8', qint32: 'QI32', quint4x2: 'QU4x2', quint2x4: 'QU2x4',
};

const REBUILDS = new Set(['_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter', '_rebuild_parameter_with_state']);

/** Python 2 module names that protocol 0–2 pickles use for the same things. */
const MODULE_ALIASES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

const ALLOWED = new Set([
  'collections.OrderedDict',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Size',
  'torch.device',
  'torch.serialization._get_layout',
  'torch.strided',
  'torch.contiguous_format',
  'torch.channels_last',
  'torch.preserve_format',
  'torch.storage._load_from_bytes',
  '_codecs.encode',
  'builtins.set',
  'builtins.frozenset',
  'builtins.bytearray',
  'builtins.bytes',
  'builtins.complex',
  'builtins.slice',
  'builtins.range',
]);

/**
 * Modules and names whose use in a weights file can only mean running code, touching files,
 * processes or the network, or reaching such things indirectly (getattr, importlib, operator).
 */
const DANGEROUS_MODULES = new Set([
  'os', 'posix', 'nt', 'subprocess', 'runpy', 'webbrowser', 'socket', 'shutil', 'sys', 'pty', 'commands', 'importlib',
  'pickle', '_pickle', 'marshal', 'types', 'ctypes', 'code', 'codeop', 'pdb', 'bdb', 'timeit', 'cProfile', 'profile',
  'trace', 'asyncio', 'http', 'urllib', 'urllib2', 'requests', 'ssl', 'telnetlib', 'ftplib', 'smtplib', 'platform',
  'multiprocessing', 'threading', '_thread', 'signal', 'tempfile', 'pathlib', 'io', '_io', 'glob', 'zipfile', 'tarfile',
  'distutils', 'setuptools', 'pip', 'operator', 'functools', 'dill', 'numpy.testing', 'torch.hub', 'torch.jit', 'torch.package',
  'torch.serialization', 'torch._inductor', 'torch.utils.cpp_extension', 'site', 'sysconfig', 'uuid', 'aiohttp', 'httplib',
]);
const DANGEROUS_BUILTINS = new Set([
  'eval', 'exec', 'compile', 'open', 'getattr', 'setattr', 'delattr', '__import__', 'globals', 'locals', 'vars',
  'input', 'breakpoint', 'execfile', 'file', 'reload', 'apply', 'memoryview', 'help', 'exit', 'quit', 'type', 'object', 'super',
]);

export function normalModule(module: string): string {
  return MODULE_ALIASES[module] ?? module;
}


/** True when the global is modelled: it builds data and needs no code of its own. */
export function allowed(g: PyGlobal): boolean {
  const m = normalModule(g.module);
  if (ALLOWED.has(`${m}.${g.name}`)) return true;
  if (m === 'torch._utils' && REBUILDS.has(g.name)) return true;
  if ((m === 'torch' || m === 'torch.storage' || m === 'torch.cuda') && g.name in STORAGES) return true;
  if (m === 'torch' && g.name in DTYPES) return true;
  return false;
}

export function classify(g: PyGlobal, depth: number): Finding {
  const m = normalModule(g.module);
  const root = m.split('.')[0];
  const dangerous =
    DANGEROUS_MODULES.has(m) || DANGEROUS_MODULES.has(root) || (m === 'builtins' && DANGEROUS_BUILTINS.has(g.name)) || g.name.startsWith('__');
  return { module: g.module, name: g.name, offset: g.offset, severity: dangerous ? 'dangerous' : 'unknown', nested: depth > 0 };
}

/** The element type named by a storage class global, or undefined. */
export function storageDType(v: PyValue | undefined): TorchDType | undefined {
  if (!isKind(v, 'global')) return undefined;
  const m = normalModule(v.module);
  if (m !== 'torch' && m !== 'torch.storage' && m !== 'torch.cuda') return undefined;
  return STORAGES[v.name];
}

export function dtypeGlobal(v: PyValue | undefined): TorchDType | undefined {
  return isKind(v, 'global') && normalModule(v.module) === 'torch' ? DTYPES[v.name] : undefined;
}

export interface CallContext {
  readonly file: string;
  readonly at: number;
  readonly findings: Finding[];
  readonly depth: number;
  readonly deadline?: number;
  /** Scans a nested legacy pickle blob (torch.storage._load_from_bytes); set by the container reader. */
  readonly nested?: (bytes: Uint8Array) => void;
}

/** Set by the container reader: how a `_load_from_bytes` blob is scanned for findings. */
let nestedScanner: ((bytes: Uint8Array, ctx: CallContext) => void) | undefined;
export function setNestedScanner(f: (bytes: Uint8Array, ctx: CallContext) => void): void {
  nestedScanner = f;
}

function ints(v: PyValue | undefined): number[] | undefined {
  const items = itemsOf(v);
  if (!items) return undefined;
  const out: number[] = [];
  for (const x of items) {
    const n = asInt(x);
    if (n === undefined) return undefined;
    out.push(n);
  }
  return out;
}

function bad(ctx: CallContext, what: string): never {
  throw new FormatError('pickle_invalid', `at byte ${ctx.at}: ${what}`, ctx.file);
}

/** `_rebuild_tensor(_v2)(storage, storage_offset, size, stride, …)` → a tensor view. */
function rebuildTensor(args: readonly PyValue[], ctx: CallContext, v3: boolean): PyTensor | undefined {
  const [storage, offset, size, stride] = args;
  if (!isKind(storage, 'storage')) return undefined; // not a real storage: stays an opaque call
  const o = asInt(offset);
  const shape = ints(size);
  const st = ints(stride);
  if (o === undefined || o < 0 || !shape || !st || shape.length !== st.length || shape.some((d) => d < 0) || st.some((s) => s < 0)) {
    bad(ctx, 'a tensor rebuild with an invalid offset, size or stride');
  }
  // v3 (torch ≥ 2.1 for dtypes without a storage class) passes the dtype 7th, over an untyped byte storage.
  const dtype = v3 ? dtypeGlobal(args[6]) : (storage as PyStorage).dtype;
  if (dtype === undefined) bad(ctx, '_rebuild_tensor_v3 without a known dtype');
  return { kind: 'tensor', storage: storage as PyStorage, dtype, storageOffset: o, shape, stride: st, parameter: false };
}

/** Evaluates a call of an allowlisted global; undefined keeps it as an opaque call. */
export function callAllowed(g: PyGlobal, args: PyValue, ctx: CallContext): PyValue | undefined {
  const a = itemsOf(args) ?? [];
  const m = normalModule(g.module);
  const name = `${m}.${g.name}`;
  if (m === 'torch._utils' && (g.name === '_rebuild_tensor' || g.name === '_rebuild_tensor_v2' || g.name === '_rebuild_tensor_v3')) {
    return rebuildTensor(a, ctx, g.name === '_rebuild_tensor_v3');
  }
  if (m === 'torch._utils' && (g.name === '_rebuild_parameter' || g.name === '_rebuild_parameter_with_state')) {
    return isKind(a[0], 'tensor') ? { ...a[0], parameter: true } : undefined;
  }
  switch (name) {
    case 'torch._tensor._rebuild_from_type_v2': {
      // (func, new_type, args, state): the tensor is func(*args); new_type is torch.Tensor or Parameter.
      const f = a[0];
      return isKind(f, 'global') && allowed(f) ? callAllowed(f, a[2] ?? null, ctx) : undefined;
    }
    case 'collections.OrderedDict':
      return { kind: 'dict', entries: [], ordered: true };
    case 'torch.Size':
      return { kind: 'tuple', items: itemsOf(a[0]) ?? [] };
    case 'torch.device':
      return a.map((x) => String(x)).join(':');
    case 'torch.serialization._get_layout':
      return typeof a[0] === 'string' ? a[0] : null;
    case '_codecs.encode':
      return typeof a[0] === 'string' ? { kind: 'bytes', bytes: latin1Bytes(a[0]) } : undefined;
    case 'builtins.set':
    case 'builtins.frozenset':
      return { kind: 'set', items: [...(itemsOf(a[0]) ?? [])], frozen: g.name === 'frozenset' };
    case 'builtins.bytearray':
    case 'builtins.bytes':
      return isKind(a[0], 'bytes') ? a[0] : typeof a[0] === 'string' ? { kind: 'bytes', bytes: latin1Bytes(a[0]) } : { kind: 'bytes', bytes: new Uint8Array(0) };
    case 'torch.storage._load_from_bytes':
      if (isKind(a[0], 'bytes') && nestedScanner) nestedScanner(a[0].bytes, ctx);
      return undefined;
    default:
      return undefined;
  }
}

function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
