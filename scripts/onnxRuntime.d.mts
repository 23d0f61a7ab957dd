// Types of scripts/onnxRuntime.mjs for the TypeScript that imports it (test/fixtures/bundles.ts).
import type { Plugin } from 'esbuild';

export const onnxRuntimeBinding: Plugin;
export const ORT_FILES: Record<string, string[]>;
/** Copies one platform's binding and runtime library into `<dist>/onnxruntime/<target>/` (target as vsce names it, default this machine's). */
export function copyOnnxRuntime(dist: string, target?: string): void;
