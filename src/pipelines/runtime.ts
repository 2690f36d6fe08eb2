/**
 * What the front ends (src/cli, src/vscode) need from the compute layer, and may
 * only take from here: choosing and releasing a backend, warming the workers, and
 * the names of the quantization schemes and merge dtypes. Everything else of
 * src/compute stays behind the pipelines.
 */
export { BackendUnavailableError, disposeBackends, getBackend } from '../compute/backend';
export { onBackendInfo } from '../compute/gpu/device';
export type { BackendChoice, BackendKind } from '../core/job';
export { isSchemeName, SCHEMES, SCHEME_NAMES, type Scheme, type SchemeName } from '../compute/quant/schemes';
export type { MatmulDType } from '../compute/matmul/matmul';
import { getCpuPool } from '../compute/cpu/pool';

/** Starts the CPU workers ahead of the first job (the viewer calls it while its page loads). */
export function warmCpuWorkers(): void {
  getCpuPool().warm();
}
