import type { BenchCase } from '../case';
import { convertQuantizedCases } from './convertQuantized';
import { formatReadCases } from './formatRead';
import { dequantCases } from './dequant';
import { kquantCases } from './kquant';
import { llamaQuantizeCases } from './llamaQuantize';
import { diffCases } from './diff';
import { extractLoraCases } from './extractLora';
import { manyTensorsCases } from './manyTensors';
import { mergeCases } from './merge';
import { mergeModelsCases } from './mergeModels';
import { pickleCases } from './pickle';
import { formatWriteCases } from './formatWrite';
import { quantizeCases } from './quantize';
import { statsCases } from './stats';
import { ggufCases } from './gguf';
import { scanCases } from './scan';
import { scanSchemeCases } from './scanSchemes';
import { viewerCases } from './viewer';
import { viewerVscodeCases } from './viewerVscode';

/** Every benchmark case; each area adds its own module's cases here. */
export const CASES: BenchCase[] = [...diffCases, ...extractLoraCases, ...mergeCases, ...mergeModelsCases, ...pickleCases, ...formatReadCases, ...formatWriteCases, ...quantizeCases, ...statsCases, ...dequantCases, ...ggufCases, ...scanCases, ...scanSchemeCases, ...kquantCases, ...manyTensorsCases, ...viewerCases, ...viewerVscodeCases, ...convertQuantizedCases, ...llamaQuantizeCases];
