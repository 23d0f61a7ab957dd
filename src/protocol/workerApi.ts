/**
 * The host<->worker protocol: every method the compute worker serves, with its
 * params, result and progress types. Types only; both sides import them.
 */
import type { ModelSummary } from './model';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendReport {
  name: 'tensorflow' | 'wasm' | 'cpu';
  notes: string[];
  initMs: number;
}

export interface WorkerApi {
  init: { params: { prefer: BackendPreference; wasmDir?: string; displayRoot?: string }; result: BackendReport; progress: never };
  loadModel: { params: { path: string }; result: ModelSummary; progress: never };
  unloadModel: { params: { path: string }; result: void; progress: never };
  memory: { params: Record<string, never>; result: { numTensors: number; numBytes: number }; progress: never };
}
