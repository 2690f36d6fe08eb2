import type { Model, SourceOpener, TensorInfo } from '../model';
import { SourceModel } from '../reader';
import { declaredQuantization } from './configInfo';
import { recognizeQuantized } from './quantizedModel';

// Cheap test before config.json is read: a name that only quantized checkpoints use.
const QUANT_HINT = /\.(weight_scale(_inv|_2)?|weight_packed|qweight)$|_blocks$/;
// compressed-tensors' `weight_shape` holds two integers; anything larger is not one.
const SHAPE_TENSOR_MAX_BYTES = 64;

/**
 * A safetensors model whose quantized weights are read as logical tensors (see
 * recognizeQuantized), given the folder that may hold its config.json. A model with
 * no quantized weight comes back unchanged, without config.json being read.
 */
export async function withQuantized(model: Model, dir: string, opener: SourceOpener): Promise<Model> {
  if (!(model instanceof SourceModel) || !model.tensors.some((t) => QUANT_HINT.test(t.name))) return model;
  let configText: string | undefined;
  try {
    configText = await opener.readText(dir === '' ? 'config.json' : `${dir}/config.json`);
  } catch {
    configText = undefined;
  }
  const ints = async (t: TensorInfo): Promise<number[]> => {
    if (t.byteLength > SHAPE_TENSOR_MAX_BYTES) return [];
    const b = new Uint8Array(t.byteLength);
    await model.read(t, 0, b);
    if (t.dtype === 'I64') return Array.from(new BigInt64Array(b.buffer), (x) => Number(x));
    return Array.from(new Int32Array(b.buffer));
  };
  let r;
  try {
    r = await recognizeQuantized(model.tensors, configText, ints);
  } catch (e) {
    await model.close().catch(() => undefined);
    throw e;
  }
  const declared = declaredQuantization(configText);
  if (r.notes.length === 0 && r.tensors.length === model.tensors.length && !declared) return model;
  return model.withTensors(r.tensors, r.notes, declared);
}
