import type { BenchCase } from '../case';

/** Every benchmark case; each area adds its own module's cases here. */
export const CASES: BenchCase[] = [];
