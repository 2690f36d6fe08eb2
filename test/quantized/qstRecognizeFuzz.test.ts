// Recognition over hostile headers: random quantized-looking names, dtypes and shapes never make it
// throw, and every logical tensor it makes has parts whose bytes line up with its units, so that a
// decode of every unit reads only inside each part and gives exactly numel values.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeCpu } from '../../src/compute/decode/decode.cpu';
import { DTYPE_INFO, partsOf, plainStorage, storageUnit, type DType, type TensorInfo } from '../../src/format';
import { recognizeQuantized } from '../../src/format/quantized/quantizedModel';
import { unitCount } from '../../src/format/quantized/units';

// A fixed seed: a failure reproduces.
let seed = 0x5eed;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}
const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)];

const SUFFIXES = ['.weight', '.weight_scale', '.weight_scale_inv', '.weight_scale_2', '.weight_packed', '.weight_global_scale', '.weight_zero_point', '.weight_shape', '.qweight', '.qzeros', '.scales', '.g_idx', '_blocks', '_scales'];
const DTYPES: DType[] = ['U8', 'I8', 'I32', 'I64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0'];
const DIMS = [0, 1, 2, 3, 4, 8, 16, 32, 48, 64, 128, 130, 256];

function tensor(name: string, dtype: DType, shape: number[], at: number): TensorInfo {
  const numel = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, numel, file: 0, byteOffset: at, byteLength: (numel * DTYPE_INFO[dtype].bits) / 8, storage: plainStorage(dtype) };
}

/** A plausible quantized weight of random size, for the rules to bite on before the shapes are spoiled. */
function template(): [string, DType, number[]][] {
  const r = pick([1, 3, 8, 20, 64, 130, 256]);
  const c = pick([16, 32, 64, 96, 128, 160, 256]);
  const g = pick([16, 32, c]);
  switch (rand(6)) {
    case 0:
      return [['x.weight', pick(['F8_E4M3', 'F8_E5M2', 'I8']), [r, c]], ['x.weight_scale_inv', 'F32', pick([[Math.ceil(r / 128), Math.ceil(c / 128)], [r, 1], [1], [r, Math.ceil(c / g)]])]];
    case 1:
      return [['x_blocks', 'U8', pick([[2, r, c / 16, 16], [r, c / 16, 16]])], ['x_scales', 'U8', pick([[2, r, c / 16], [r, c / 16]])]];
    case 2:
      return [['x.weight_packed', 'U8', [r, c / 2]], ['x.weight_scale', 'F8_E4M3', [r, c / 16]], ['x.weight_global_scale', 'F32', [1]]];
    case 3:
      return [['x.weight_packed', 'I32', [r, c / 8]], ['x.weight_scale', 'BF16', [r, c / g]], ['x.weight_zero_point', 'I32', [Math.ceil(r / 8), c / g]], ['x.weight_shape', 'I64', [2]]];
    case 4:
      return [['x.qweight', 'I32', [c / 8, r * 8]], ['x.qzeros', 'I32', [c / g, r]], ['x.scales', 'F16', [c / g, r * 8]], ['x.g_idx', 'I32', [c]]];
    default:
      return [['x.qweight', 'I32', [c, r]], ['x.qzeros', 'I32', [c / g, r]], ['x.scales', 'F16', [c / g, r * 8]]];
  }
}

function randomHeader(): TensorInfo[] {
  const out: TensorInfo[] = [];
  let at0 = 0;
  for (const [name, dtype, shape] of template()) {
    // Now and then one dimension or dtype is spoiled.
    const sh = rand(4) === 0 && shape.length > 0 ? shape.map((d, i) => (i === rand(shape.length) ? pick(DIMS) : d)) : shape;
    const t = tensor(name, rand(8) === 0 ? pick(DTYPES) : dtype, sh, at0);
    out.push(t);
    at0 += t.byteLength;
  }
  const stems = ['a', 'b', 'c'];
  let at = at0;
  for (let i = 0; i < rand(6); i++) {
    const shape = Array.from({ length: rand(5) }, () => pick(DIMS));
    const t = tensor(`${pick(stems)}${pick(SUFFIXES)}`, pick(DTYPES), shape, at);
    if (out.some((x) => x.name === t.name)) continue;
    out.push(t);
    at += t.byteLength;
  }
  return out;
}

test('random quantized-looking headers: recognition never throws, and logical tensors line up with their parts', async () => {
  let logical = 0;
  for (let iter = 0; iter < 3000; iter++) {
    const tensors = randomHeader();
    const ints = async (t: TensorInfo): Promise<number[]> => Array.from({ length: t.numel }, () => pick(DIMS));
    const r = await recognizeQuantized(tensors, pick([undefined, '{', '{"quantization_config":{"bits":8,"group_size":16,"weight_block_size":[64,64]}}']), ints);
    assert.equal(new Set(r.tensors.map((t) => t.name)).size, r.tensors.length);
    for (const t of r.tensors) {
      const s = t.storage;
      if (s?.kind !== 'scheme') continue;
      logical++;
      const units = unitCount(t);
      const per = s.partUnitBytes!;
      const parts = partsOf(t);
      for (let k = 0; k < parts.length; k++) {
        if (per[k] === 0) continue;
        assert.ok(parts[k].byteLength <= units * per[k] && parts[k].byteLength > (units - 1) * per[k], `${t.name} part ${k}: ${parts[k].byteLength} bytes for ${units} units of ${per[k]}`);
      }
      assert.ok(t.byteLength <= units * storageUnit(s).bytes);
      const bytes = parts.map((p) => Uint8Array.from({ length: p.byteLength }, () => rand(256)));
      const out = decodeCpu({ dtype: t.dtype, bytes: bytes[0], more: bytes.slice(1), count: t.numel, storage: s });
      assert.equal(out.length, t.numel);
    }
  }
  assert.ok(logical > 0, 'the generator never produced a recognisable weight');
});
