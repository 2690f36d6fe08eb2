import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { GGML_TYPES, type GgmlTypeName } from '../../src/format/gguf/types';

/**
 * The real libggml (node-llama-cpp's CPU build, `@node-llama-cpp/linux-x64`) called through
 * koffi: the oracle the dequantizers must match bit for bit. `loadGgml()` returns the reason
 * when it cannot load; callers fail under CI=true and skip otherwise.
 */
export interface Ggml {
  /** ggml's own decoder for the type (`dequantize_row_*` or the f16/bf16 row converters). */
  toFloat(type: GgmlTypeName, src: Uint8Array, n: number): Float32Array;
  /** `ggml_quantize_chunk` over `rows` rows of `perRow` values; imatrix when the type needs one. */
  quantize(type: GgmlTypeName, x: Float32Array, rows: number, perRow: number, imatrix?: Float32Array): Uint8Array;
  requiresImatrix(id: number): boolean;
  typeName(id: number): string;
  blockSize(id: number): number;
  typeSize(id: number): number;
}

const LIB = join('node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64', 'libggml-base.so');

const ROW_FN: Partial<Record<GgmlTypeName, string>> = { F16: 'ggml_fp16_to_fp32_row', BF16: 'ggml_bf16_to_fp32_row' };

export function loadGgml(): Ggml | string {
  if (!existsSync(LIB)) return `${LIB} is missing (npm install)`;
  let koffi: typeof import('koffi');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    koffi = require('koffi');
  } catch (e) {
    return `koffi does not load: ${(e as Error).message}`;
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(LIB);
  } catch (e) {
    return `libggml-base.so does not load: ${(e as Error).message}`;
  }
  const typeName = lib.func('const char* ggml_type_name(int)');
  const blockSize = lib.func('int64_t ggml_blck_size(int)');
  const typeSize = lib.func('size_t ggml_type_size(int)');
  const requires = lib.func('bool ggml_quantize_requires_imatrix(int)');
  const quantizeChunk = lib.func('size_t ggml_quantize_chunk(int, const float*, _Out_ uint8_t*, int64_t, int64_t, int64_t, const float*)');
  const rowFns = new Map<string, (src: Uint8Array, out: Float32Array, n: number) => void>();
  const rowFn = (name: string) => {
    let fn = rowFns.get(name);
    if (!fn) {
      fn = lib.func(`void ${name}(const uint8_t*, _Out_ float*, int64_t)`) as (src: Uint8Array, out: Float32Array, n: number) => void;
      rowFns.set(name, fn);
    }
    return fn;
  };
  // Only ids below GGML_TYPE_COUNT may be asked (ggml indexes its trait table unchecked).
  const ids = new Map<string, number>();
  for (const id of GGML_TYPES.keys()) ids.set(String(typeName(id)).toUpperCase(), id);
  const idOf = (type: GgmlTypeName) => {
    const id = ids.get(type);
    if (id === undefined) throw new Error(`libggml has no type ${type}`);
    return id;
  };
  return {
    toFloat(type, src, n) {
      const out = new Float32Array(n);
      rowFn(ROW_FN[type] ?? `dequantize_row_${type.toLowerCase().replace(/_k$/, '_K')}`)(src, out, n);
      return out;
    },
    quantize(type, x, rows, perRow, imatrix) {
      const id = idOf(type);
      const bytes = (rows * perRow * Number(typeSize(id))) / Number(blockSize(id));
      const out = new Uint8Array(bytes);
      const written = Number(quantizeChunk(id, x, out, 0, rows, perRow, imatrix ?? null));
      if (written !== bytes) throw new Error(`ggml_quantize_chunk(${type}) wrote ${written} bytes, expected ${bytes}`);
      return out;
    },
    requiresImatrix: (id) => Boolean(requires(id)),
    typeName: (id) => String(typeName(id)),
    blockSize: (id) => Number(blockSize(id)),
    typeSize: (id) => Number(typeSize(id)),
  };
}
