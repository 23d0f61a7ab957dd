/**
 * Chooses the compute backend for the engine: tfjs-node when it is installed
 * and loads (native libtensorflow), else @tensorflow/tfjs on wasm with the
 * training kernels that wasm lacks (src/engine/kernels), else the pure-JS cpu
 * backend. The choice and the reason for it are returned so that the host can
 * log them and show them in the status bar.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { registerWasmTrainingKernels } from './kernels';
import { loadSimdKernels } from './kernels/simd';
import { silenceWasmAbortPrinting } from './wasmTrap';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** Why this backend and not a faster one, for the log. */
  notes: string[];
  /** Milliseconds spent choosing and initialising. */
  initMs: number;
}

export interface BackendOptions {
  prefer?: BackendPreference;
  /**
   * Folder holding tfjs-backend-wasm's .wasm files. Bundles pass their own
   * directory (esbuild.mjs copies the binaries there); unbundled code finds
   * them in node_modules.
   */
  wasmDir?: string;
}

let current: BackendInfo | undefined;
/** The folder the wasm binaries were loaded from, when it was set (bundles). */
let wasmDirInUse: string | undefined;

export function currentBackend(): BackendInfo | undefined {
  return current;
}

/**
 * How to initialise the same backend in another thread (a training helper,
 * src/engine/train/parallel.ts): its name, and the wasm folder used here.
 */
export function backendOptionsInUse(): { prefer: BackendName; wasmDir?: string } | undefined {
  return current && { prefer: current.name, ...(wasmDirInUse ? { wasmDir: wasmDirInUse } : {}) };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

async function tryTensorflow(notes: string[]): Promise<boolean> {
  try {
    // tfjs-node registers the 'tensorflow' backend in tfjs-core's global
    // registry, which every copy of tfjs-core 4.x shares.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('@tensorflow/tfjs-node');
  } catch (e) {
    notes.push(`tfjs-node is not available (${errorText(e)})`);
    return false;
  }
  try {
    if (await tf.setBackend('tensorflow')) return true;
    notes.push('tfjs-node loaded but its backend did not initialise');
  } catch (e) {
    notes.push(`tfjs-node backend failed: ${errorText(e)}`);
  }
  return false;
}

function findWasmDir(explicit?: string): string | undefined {
  const candidates = [
    explicit,
    typeof __dirname === 'string' ? __dirname : undefined,
  ];
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, 'tfjs-backend-wasm-simd.wasm'))) return dir;
  }
  return undefined; // unbundled: the backend resolves its own files
}

async function tryWasm(notes: string[], wasmDir?: string): Promise<boolean> {
  try {
    const dir = findWasmDir(wasmDir);
    if (dir) setWasmPaths(dir.endsWith(path.sep) ? dir : dir + path.sep);
    wasmDirInUse = dir;
    registerWasmTrainingKernels();
    silenceWasmAbortPrinting();
    if (await tf.setBackend('wasm')) {
      const note = loadSimdKernels(dir);
      if (note) notes.push(note);
      return true;
    }
    notes.push('wasm backend did not initialise');
  } catch (e) {
    notes.push(`wasm backend failed: ${errorText(e)}`);
  }
  return false;
}

/** Initialises the backend once; later calls return the first result. */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  if (current) return current;
  const start = performance.now();
  const prefer = options.prefer ?? 'auto';
  const notes: string[] = [];
  // Production mode: no debug checks, and no "install tfjs-node" banner on stdout.
  tf.env().set('PROD', true);
  let name: BackendName = 'cpu';
  if ((prefer === 'auto' || prefer === 'tensorflow') && (await tryTensorflow(notes))) {
    name = 'tensorflow';
  } else if (prefer !== 'cpu' && (await tryWasm(notes, options.wasmDir))) {
    name = 'wasm';
  } else {
    await tf.setBackend('cpu');
    if (prefer === 'cpu') notes.push('cpu backend requested');
  }
  await tf.ready();
  current = { name, notes, initMs: Math.round(performance.now() - start) };
  return current;
}
