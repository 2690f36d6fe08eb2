// The compute worker (dist/worker.js): runs CPU twins by name for the pool in cpu/pool.ts.
import { parentPort } from 'node:worker_threads';
import { BATCH_KERNEL, type BatchArgs, type WorkerReply, type WorkerRequest } from './cpu/pool';
import { KERNELS } from './kernels';

/** Buffers of typed arrays in a result, moved back rather than copied (the worker keeps nothing). */
function transferables(v: unknown, out = new Set<ArrayBuffer>(), depth = 0): Set<ArrayBuffer> {
  if (v === null || typeof v !== 'object' || depth > 3) return out;
  if (ArrayBuffer.isView(v)) {
    if (v.buffer instanceof ArrayBuffer) out.add(v.buffer);
  } else if (v instanceof ArrayBuffer) {
    out.add(v);
  } else if (Array.isArray(v)) {
    for (const x of v) transferables(x, out, depth + 1);
  } else {
    for (const x of Object.values(v)) transferables(x, out, depth + 1);
  }
  return out;
}

function errorOf(e: unknown): Extract<WorkerReply, { ok: false }>['error'] {
  if (e instanceof Error) {
    const x = e as Error & { code?: unknown; file?: unknown; tensor?: unknown };
    return {
      name: e.name,
      message: e.message,
      stack: e.stack,
      code: typeof x.code === 'string' ? x.code : undefined,
      file: typeof x.file === 'string' ? x.file : undefined,
      tensor: typeof x.tensor === 'string' ? x.tensor : undefined,
    };
  }
  return { name: 'Error', message: String(e) };
}

/** The buffers a reply moves: none for kernels that copy their results back (see `KernelDef.copyResults`). */
export function resultTransfer(kernel: string, args: unknown, result: unknown): ArrayBuffer[] {
  const name = kernel === BATCH_KERNEL ? (args as BatchArgs).kernel : kernel;
  return kernelOf(name).copyResults ? [] : [...transferables(result)];
}

function kernelOf(name: string) {
  const k = KERNELS[name];
  if (!k) throw new Error(`unknown kernel '${name}'`);
  return k;
}

/** Many small calls of one kernel in one task, in order: one round trip instead of one each. */
async function runBatch(args: BatchArgs): Promise<unknown[]> {
  const k = kernelOf(args.kernel);
  const out: unknown[] = [];
  for (const a of args.items) out.push(await k.cpu(a));
  return out;
}

const port = parentPort;
if (port) {
  port.on('message', async (req: WorkerRequest) => {
    let reply: WorkerReply;
    let transfer: ArrayBuffer[] = [];
    try {
      const result = req.kernel === BATCH_KERNEL ? await runBatch(req.args as BatchArgs) : await kernelOf(req.kernel).cpu(req.args);
      reply = { id: req.id, ok: true, result };
      transfer = resultTransfer(req.kernel, req.args, result);
    } catch (e) {
      reply = { id: req.id, ok: false, error: errorOf(e) };
    }
    try {
      port.postMessage(reply, transfer);
    } catch (e) {
      // The result could not be cloned: the caller must still hear back.
      port.postMessage({ id: req.id, ok: false, error: errorOf(e) } satisfies WorkerReply);
    }
  });
}
