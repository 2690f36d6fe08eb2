/**
 * A minimal WebAssembly module assembler: just what the SIMD kernels need (one
 * exported memory, functions with typed locals, structured control, scalar and
 * 128-bit SIMD instructions). WebAssembly's float operations are IEEE-754 with
 * round-to-nearest-even and never fused, which is why the exact rules hold there.
 */

/** WebAssembly's page size: memories grow in these. */
export const WASM_PAGE = 65536;

/** An exported memory, as the kernels use it. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

/** Compiles and instantiates a module that imports nothing; throws where WebAssembly (or its SIMD) is missing. */
export function instantiate<E>(bytes: Uint8Array): E {
  const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  return new wasm.Instance(new wasm.Module(bytes), {}).exports as E;
}

/** Grows `memory` until it holds at least `bytes`. */
export function ensureMemory(memory: WasmMemory, bytes: number): void {
  if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / WASM_PAGE));
}

export const T = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b } as const;
export type ValType = (typeof T)[keyof typeof T];

function uleb(n: number, out: number[]): void {
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** Scalar opcodes (single byte). */
export const OP = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, br_if: 0x0d, return: 0x0f, select: 0x1b,
  i32_eqz: 0x45, i32_eq: 0x46, i32_ne: 0x47, i32_lt_s: 0x48, i32_lt_u: 0x49, i32_gt_s: 0x4a, i32_gt_u: 0x4b, i32_le_s: 0x4c, i32_ge_s: 0x4e, i32_ge_u: 0x4f,
  f32_eq: 0x5b, f32_ne: 0x5c,
  i32_ctz: 0x68, i32_add: 0x6a, i32_sub: 0x6b, i32_mul: 0x6c, i32_and: 0x71, i32_or: 0x72, i32_xor: 0x73, i32_shl: 0x74, i32_shr_s: 0x75, i32_shr_u: 0x76,
  f32_abs: 0x8b, f32_add: 0x92, f32_sub: 0x93, f32_mul: 0x94, f32_div: 0x95, f32_min: 0x96, f32_max: 0x97,
  f64_add: 0xa0, f64_sub: 0xa1, f64_abs: 0x99, f64_ne: 0x62, f64_gt: 0x64, f64_promote_f32: 0xbb, i32_reinterpret_f32: 0xbc, f32_reinterpret_i32: 0xbe,
  // Loads and stores (followed by alignment and offset immediates).
  i32_load: 0x28, f32_load: 0x2a, f64_load: 0x2b, i32_load16_u: 0x2f, i32_store: 0x36, f32_store: 0x38, f64_store: 0x39, i32_store16: 0x3b,
} as const;

/** SIMD opcodes (after the 0xfd prefix). */
export const SIMD = {
  v128_load: 0x00, v128_load16x4_u: 0x04, v128_load64_splat: 0x0a, v128_store: 0x0b, i32x4_splat: 0x11, f32x4_splat: 0x13, i32x4_extract_lane: 0x1b, f32x4_extract_lane: 0x1f,
  i32x4_eq: 0x37, i32x4_lt_s: 0x39, i32x4_gt_s: 0x3b, f32x4_eq: 0x41, f32x4_ne: 0x42, f32x4_ge: 0x46,
  v128_and: 0x4e, v128_andnot: 0x4f, v128_or: 0x50, v128_bitselect: 0x52, v128_any_true: 0x53,
  f32x4_demote_f64x2_zero: 0x5e, f64x2_promote_low_f32x4: 0x5f,
  i8x16_narrow_i16x8_s: 0x65, i8x16_narrow_i16x8_u: 0x66, f32x4_trunc: 0x69, f32x4_nearest: 0x6a, i8x16_shl: 0x6b,
  i16x8_narrow_i32x4_s: 0x85, i16x8_narrow_i32x4_u: 0x86,
  i32x4_bitmask: 0xa4, i32x4_extend_low_i16x8_u: 0xa9, i32x4_extend_high_i16x8_u: 0xaa, i32x4_shl: 0xab, i32x4_shr_u: 0xad, i32x4_add: 0xae, i32x4_sub: 0xb1, i32x4_min_s: 0xb6, i32x4_min_u: 0xb7, i32x4_max_s: 0xb8, i32x4_max_u: 0xb9,
  f32x4_abs: 0xe0, f32x4_add: 0xe4, f32x4_sub: 0xe5, f32x4_mul: 0xe6, f32x4_div: 0xe7, f32x4_min: 0xe8, f32x4_max: 0xe9, f32x4_pmax: 0xeb,
  f64x2_add: 0xf0, f64x2_sub: 0xf1, f64x2_mul: 0xf2,
  i32x4_trunc_sat_f32x4_s: 0xf8, f32x4_convert_i32x4_s: 0xfa,
} as const;

/** One function body under construction. */
export class Fn {
  readonly body: number[] = [];
  private readonly localTypes: ValType[] = [];
  constructor(
    readonly params: readonly ValType[],
    readonly results: readonly ValType[],
  ) {}

  local(t: ValType): number {
    this.localTypes.push(t);
    return this.params.length + this.localTypes.length - 1;
  }

  op(...bytes: number[]): this {
    this.body.push(...bytes);
    return this;
  }
  get(i: number): this { return this.op(0x20, ...lebU(i)); }
  set(i: number): this { return this.op(0x21, ...lebU(i)); }
  tee(i: number): this { return this.op(0x22, ...lebU(i)); }
  i32(v: number): this { const o = [0x41]; sleb(v | 0, o); return this.op(...o); }
  f32(v: number): this {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    return this.op(0x43, ...b);
  }
  f64(v: number): this {
    const b = new Uint8Array(new Float64Array([v]).buffer);
    return this.op(0x44, ...b);
  }
  /** Memory access with a static byte offset; `align` is log2 of the natural alignment. */
  mem(opcode: number, offset = 0, align = 0): this { return this.op(opcode, ...lebU(align), ...lebU(offset)); }
  simd(opcode: number): this { return this.op(0xfd, ...lebU(opcode)); }
  simdMem(opcode: number, offset = 0, align = 0): this { return this.op(0xfd, ...lebU(opcode), ...lebU(align), ...lebU(offset)); }
  lane(opcode: number, lane: number): this { return this.op(0xfd, ...lebU(opcode), lane); }
  /** `i8x16.shuffle`: byte i of the result is byte `lanes[i]` of the two operands concatenated (0–31). */
  shuffle(lanes: readonly number[]): this {
    if (lanes.length !== 16) throw new RangeError('i8x16.shuffle takes 16 lane indices');
    return this.op(0xfd, 0x0d, ...lanes);
  }
  /** Block types: 0x40 = no result. */
  block(): this { return this.op(OP.block, 0x40); }
  loop(): this { return this.op(OP.loop, 0x40); }
  if_(): this { return this.op(OP.if, 0x40); }
  end(): this { return this.op(OP.end); }

  encode(): number[] {
    const out: number[] = [];
    // Locals run-length encoded by type.
    const groups: Array<[number, ValType]> = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    uleb(groups.length, out);
    for (const [n, t] of groups) {
      uleb(n, out);
      out.push(t);
    }
    out.push(...this.body, OP.end);
    const sized: number[] = [];
    uleb(out.length, sized);
    return [...sized, ...out];
  }
}

function lebU(n: number): number[] {
  const o: number[] = [];
  uleb(n, o);
  return o;
}

function section(id: number, payload: number[]): number[] {
  return [id, ...lebU(payload.length), ...payload];
}

function name(s: string): number[] {
  const b = Array.from(new TextEncoder().encode(s));
  return [...lebU(b.length), ...b];
}

/** Assembles a module exporting `memory` (of `pages` × 64 KiB initially) and each named function. */
export function assemble(fns: ReadonlyArray<readonly [string, Fn]>, pages: number): Uint8Array {
  const types: number[] = [...lebU(fns.length)];
  for (const [, f] of fns) types.push(0x60, ...lebU(f.params.length), ...f.params, ...lebU(f.results.length), ...f.results);
  const funcs = [...lebU(fns.length), ...fns.flatMap((_, i) => lebU(i))];
  const memory = [1, 0x00, ...lebU(pages)];
  const exports: number[] = [...lebU(fns.length + 1), ...name('memory'), 0x02, 0];
  fns.forEach(([n], i) => exports.push(...name(n), 0x00, ...lebU(i)));
  const code = [...lebU(fns.length), ...fns.flatMap(([, f]) => f.encode())];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, types),
    ...section(3, funcs),
    ...section(5, memory),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

/**
 * binary16 codes in the u32 lanes of `h` → their f32 values in `out`, exactly: normals
 * rebias the exponent, subnormals are m·2^-24 (an exact f32 product), inf/NaN keep
 * their payload. `t1`, `t2` are scratch locals.
 */
export function emitF16x4(f: Fn, h: number, out: number, t1: number, t2: number): void {
  f.get(h).i32(0x7fff).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).set(t1); // magnitude
  // Subnormal (or zero) value, then the normal bits, chosen by magnitude < 0x400.
  f.get(t1).simd(SIMD.f32x4_convert_i32x4_s).f32(2 ** -24).simd(SIMD.f32x4_splat).simd(SIMD.f32x4_mul);
  f.get(t1).i32(13).simd(SIMD.i32x4_shl).i32(112 << 23).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_add);
  f.get(t1).i32(0x400).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_lt_s).simd(SIMD.v128_bitselect).set(t2);
  // Inf and NaN: all-ones exponent.
  f.get(t1).i32(13).simd(SIMD.i32x4_shl).i32(0x7f800000).simd(SIMD.i32x4_splat).simd(SIMD.v128_or);
  f.get(t2);
  f.get(t1).i32(0x7bff).simd(SIMD.i32x4_splat).simd(SIMD.i32x4_gt_s).simd(SIMD.v128_bitselect);
  f.get(h).i32(0x8000).simd(SIMD.i32x4_splat).simd(SIMD.v128_and).i32(16).simd(SIMD.i32x4_shl).simd(SIMD.v128_or).set(out);
}
