/**
 * Layer Lens's SIMD training kernels (./assembly, AssemblyScript compiled to
 * dist/layerlens-kernels.wasm by scripts/buildKernels.mjs), instantiated
 * against tfjs-backend-wasm's own WebAssembly.Memory. A kernel reads and
 * writes tensors where tfjs keeps them: its arguments are heap offsets
 * (`pointerOf`), so nothing is copied between two heaps.
 *
 * Loaded once per thread by the backend (src/engine/backend.ts) after the
 * wasm backend starts. Where it cannot load, `simdKernels()` is undefined and
 * training falls back to tfjs's own gradients (slower), which the backend
 * notes say.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const KERNELS_FILE = 'layerlens-kernels.wasm';

type Ptr = number;

/** The module's exports (src/engine/kernels/assembly/index.ts says what each does). */
export interface KernelExports {
  zeroF64(p: Ptr, n: number): void;
  zeroF32(p: Ptr, n: number): void;
  f64ToF32(src: Ptr, dst: Ptr, n: number): void;
  addF32ToF64(src: Ptr, dst: Ptr, n: number): void;
  channelMoments(x: Ptr, rows: number, rowsPerImage: number, c: number, shift: Ptr, sum: Ptr, sq: Ptr, acc: Ptr): void;
  affine(x: Ptr, y: Ptr, rows: number, c: number, scale: Ptr, shift: Ptr, clamp: number, lo: number, hi: number): void;
  bnGradReduce(
    dy: Ptr, y: Ptr, x: Ptr, rows: number, rowsPerImage: number, c: number, mean: Ptr,
    clamp: number, lo: number, hi: number, sumG: Ptr, sumGX: Ptr, acc: Ptr,
  ): void;
  bnGradApply(
    dy: Ptr, y: Ptr, x: Ptr, dx: Ptr, rows: number, c: number, mean: Ptr,
    a: Ptr, b: Ptr, d: Ptr, clamp: number, lo: number, hi: number, useX: number,
  ): void;
  clampGrad(dy: Ptr, y: Ptr, dx: Ptr, n: number, lo: number, hi: number): void;
  spreadChannels(dy: Ptr, dx: Ptr, n: number, p: number, c: number, s: number): void;
  depthwiseBackward(
    x: Ptr, dy: Ptr, w: Ptr, dx: Ptr, dwAcc: Ptr, scratch: Ptr,
    n: number, h: number, wd: number, c: number, oh: number, ow: number, kh: number, kw: number,
    sh: number, sw: number, dh: number, dw: number, pt: number, pl: number,
  ): void;
  convFilterGrad(
    x: Ptr, dy: Ptr, dwAcc: Ptr, scratch: Ptr,
    n: number, h: number, w: number, ci: number, oh: number, ow: number, co: number, kh: number, kw: number,
    sh: number, sw: number, dh: number, dw: number, pt: number, pl: number,
  ): void;
}

export interface SimdKernels {
  k: KernelExports;
  backend: BackendWasm;
  /** Heap offset of a tensor's data. */
  pointerOf(t: tf.TensorInfo): Ptr;
  /** A float32 tensor of `shape` whose contents are undefined until written. */
  empty(shape: number[]): tf.Tensor;
  /** A float32 tensor holding `values` (a few per-channel numbers). */
  vector(values: ArrayLike<number>): tf.Tensor1D;
  /**
   * A scratch area of at least `bytes`, valid until the next call (kernels
   * use it for block sums). Grows, never shrinks.
   */
  scratch(bytes: number): Ptr;
  /** Raw heap memory, 16-byte aligned; free it with `free`. */
  malloc(bytes: number): Ptr;
  free(p: Ptr): void;
  /** Views of the heap, made afresh (any allocation may grow and detach it). */
  f32(p: Ptr, n: number): Float32Array;
  f64(p: Ptr, n: number): Float64Array;
}

/** The part of the WebAssembly API used here (lib ES2022 does not declare it). */
interface WasmApi {
  Memory: new (...args: never[]) => object;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
const WebAssemblyApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let loaded: SimdKernels | undefined;
let loadedFor: BackendWasm | undefined;

/** The kernels, if they loaded for the wasm backend in use. */
export function simdKernels(): SimdKernels | undefined {
  return loaded && tf.getBackend() === 'wasm' && tf.backend() === loadedFor ? loaded : undefined;
}

interface WasmModule {
  asm: Record<string, unknown>;
  _malloc(n: number): number;
  _free(p: number): void;
  HEAPU8: Uint8Array;
}

interface WasmInternals {
  wasm: WasmModule;
  dataIdMap: { get(id: object): { memoryOffset: number } | undefined };
}

/**
 * Finds the compiled kernels: next to the bundles (`dir`), else in the
 * repository's dist/ when running from source, (re)built there when missing
 * or older than the source. Returns the bytes.
 */
function kernelBinary(dir?: string): Uint8Array {
  const candidates = [dir, typeof __dirname === 'string' ? __dirname : undefined].filter((d): d is string => !!d);
  for (const d of candidates) {
    const f = path.join(d, KERNELS_FILE);
    if (fs.existsSync(f)) return fs.readFileSync(f);
  }
  const root = repoRoot();
  if (!root) throw new Error(`${KERNELS_FILE} is not next to the bundles (run \`npm run build\`)`);
  const source = path.join(root, 'src/engine/kernels/assembly/index.ts');
  const built = path.join(root, 'dist', KERNELS_FILE);
  const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs;
  if (stale) {
    const r = spawnSync(process.execPath, [path.join(root, 'scripts/buildKernels.mjs'), built], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`building ${KERNELS_FILE} failed: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]}`);
  }
  return fs.readFileSync(built);
}

/** The repository root when running from source (unbundled), else undefined. */
function repoRoot(): string | undefined {
  let dir = typeof __dirname === 'string' ? __dirname : process.cwd();
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'src/engine/kernels/assembly/index.ts')) && fs.existsSync(path.join(dir, 'scripts/buildKernels.mjs'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

/**
 * Instantiates the kernels against the current wasm backend's memory.
 * Returns undefined on success, else why they are not available (for the
 * backend's notes).
 */
export function loadSimdKernels(dir?: string): string | undefined {
  if (tf.getBackend() !== 'wasm') return 'the SIMD kernels need the wasm backend';
  const backend = tf.backend() as unknown as BackendWasm;
  if (loadedFor === backend) return undefined;
  try {
    const internals = backend as unknown as WasmInternals;
    const memory = Object.values(internals.wasm.asm).find((v) => v instanceof WebAssemblyApi.Memory);
    if (!memory) throw new Error('tfjs-backend-wasm does not expose its memory');
    const module = new WebAssemblyApi.Module(kernelBinary(dir));
    const instance = new WebAssemblyApi.Instance(module, { env: { memory } });
    const k = instance.exports as unknown as KernelExports;
    const wasm = internals.wasm;
    let scratchPtr = 0;
    let scratchBytes = 0;
    loaded = {
      k,
      backend,
      pointerOf(t) {
        const entry = internals.dataIdMap.get(t.dataId);
        if (!entry) throw new Error('tensor is not on the wasm backend');
        return entry.memoryOffset;
      },
      empty(shape) {
        return tf.engine().makeTensorFromTensorInfo(backend.makeOutput(shape, 'float32'), backend);
      },
      vector(values) {
        return tf.tensor1d(Float32Array.from(values), 'float32');
      },
      scratch(bytes) {
        if (bytes > scratchBytes) {
          if (scratchPtr) wasm._free(scratchPtr);
          scratchBytes = Math.max(bytes, scratchBytes * 2, 1 << 16);
          scratchPtr = wasm._malloc(scratchBytes);
          if (!scratchPtr) throw new Error(`the wasm heap has no room for ${scratchBytes} bytes of kernel scratch`);
        }
        return scratchPtr;
      },
      malloc(bytes) {
        const p = wasm._malloc(bytes);
        if (!p) throw new Error(`the wasm heap has no room for ${bytes} bytes`);
        return p;
      },
      free(p) {
        wasm._free(p);
      },
      f32(p, n) {
        return new Float32Array(wasm.HEAPU8.buffer, p, n);
      },
      f64(p, n) {
        return new Float64Array(wasm.HEAPU8.buffer, p, n);
      },
    };
    loadedFor = backend;
    return undefined;
  } catch (e) {
    loaded = undefined;
    loadedFor = undefined;
    return `Layer Lens's SIMD training kernels did not load (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); training uses tfjs's gradients, which are slower and need more memory`;
  }
}
