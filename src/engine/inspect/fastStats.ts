/**
 * Sum and count of exact zeros of a tensor, the two numbers behind each bar
 * of the inspector's layer list, for every layer on every inspection.
 *
 * Why not tf ops: on wasm, mean(x) and mean(step(|x|)) per layer cost 4 ops
 * of ~100 us dispatch each (60 ms for MobileNet's 158 layers before any
 * arithmetic), and wasm's Mean kernel is a scalar loop (4.6 ms per million
 * values). A JS loop over the backend's heap is one pass but still scalar
 * (~3-6 ns per value). Both made an inspection cost 1.6-2.2x a predict.
 *
 * So on wasm this reads the tensors in place with a 300-byte SIMD kernel of
 * our own, instantiated on tfjs's own WebAssembly.Memory: f32x4 loads, sums
 * promoted to f64 (exact enough to match a float64 JS sum), zeros counted
 * with f32x4.eq. Anything missing (another backend, a tfjs that hides its
 * memory, a runtime without SIMD) falls back to the JS loop, with the same
 * results; `statsPath()` says which one runs.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/*
 * The kernel, compiled with wabt 1.0.39 (`wat2wasm --enable-simd`) from:
 *
 * (module
 *   (import "env" "memory" (memory 0))
 *   (global $zeros (export "zeros") (mut i32) (i32.const 0))
 *   (func (export "sum") (param $p i32) (param $n i32) (result f64)
 *     (local $vend i32) (local $end i32) (local $lo v128) (local $hi v128) (local $z v128) (local $v v128) (local $s f64) (local $x f32) (local $zc i32)
 *     (local.set $vend (i32.add (local.get $p) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
 *     (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
 *     (block $done
 *       (loop $l
 *         (br_if $done (i32.ge_u (local.get $p) (local.get $vend)))
 *         (local.set $v (v128.load align=4 (local.get $p)))
 *         (local.set $lo (f64x2.add (local.get $lo) (f64x2.promote_low_f32x4 (local.get $v))))
 *         (local.set $hi (f64x2.add (local.get $hi) (f64x2.promote_low_f32x4
 *           (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
 *         (local.set $z (i32x4.sub (local.get $z) (f32x4.eq (local.get $v) (v128.const i32x4 0 0 0 0))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *         (br $l)))
 *     (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
 *     (local.set $s (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))))
 *     (local.set $zc (i32.add (i32.add (i32x4.extract_lane 0 (local.get $z)) (i32x4.extract_lane 1 (local.get $z)))
 *                             (i32.add (i32x4.extract_lane 2 (local.get $z)) (i32x4.extract_lane 3 (local.get $z)))))
 *     (block $tdone
 *       (loop $t
 *         (br_if $tdone (i32.ge_u (local.get $p) (local.get $end)))
 *         (local.set $x (f32.load (local.get $p)))
 *         (local.set $s (f64.add (local.get $s) (f64.promote_f32 (local.get $x))))
 *         (local.set $zc (i32.add (local.get $zc) (f32.eq (local.get $x) (f32.const 0))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 4)))
 *         (br $t)))
 *     (global.set $zeros (local.get $zc))
 *     (local.get $s)))
 */
const KERNEL_BASE64 =
  'AGFzbQEAAAABBwFgAn9/AXwCDwEDZW52Bm1lbW9yeQIAAAMCAQAGBgF/AUEACwcPAgV6ZXJvcwMAA3N1bQAACvIBAe8BBQJ/BHsBfAF9AX8gACABQXxxQQJ0aiECIAAgAUECdGohAwJAA0AgACACTw0BIAD9AAIAIQcgBCAH/V/98AEhBCAFIAcgB/0NCAkKCwwNDg8AAQIDBAUGB/1f/fABIQUgBiAH/QwAAAAAAAAAAAAAAAAAAAAA/UH9sQEhBiAAQRBqIQAMAAsLIAQgBf3wASEEIAT9IQAgBP0hAaAhCCAG/RsAIAb9GwFqIAb9GwIgBv0bA2pqIQoCQANAIAAgA08NASAAKgIAIQkgCCAJu6AhCCAKIAlDAAAAAFtqIQogAEEEaiEADAALCyAKJAAgCAs=';

/*
 * The few WebAssembly JS API members used here, typed locally: the project's
 * lib (ES2022, no DOM) does not declare the WebAssembly namespace.
 */
type WasmMemory = object;
interface WasmGlobal {
  value: unknown;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
  Memory: abstract new (...args: never[]) => WasmMemory;
  Global: abstract new (...args: never[]) => WasmGlobal;
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

interface Kernel {
  sum: (ptr: number, n: number) => number;
  zeros: WasmGlobal;
}

const kernels = new WeakMap<WasmMemory, Kernel | null>();

function tfjsMemory(backend: BackendWasm): WasmMemory | undefined {
  const m = (backend as unknown as { wasm?: { asm?: { memory?: unknown } } }).wasm?.asm?.memory;
  return wasmApi && m instanceof wasmApi.Memory ? m : undefined;
}

function kernelFor(backend: BackendWasm): Kernel | undefined {
  const memory = tfjsMemory(backend);
  if (!memory || !wasmApi) return undefined;
  let k = kernels.get(memory);
  if (k === undefined) {
    try {
      const module = new wasmApi.Module(Buffer.from(KERNEL_BASE64, 'base64'));
      const { sum, zeros } = new wasmApi.Instance(module, { env: { memory } }).exports;
      k = typeof sum === 'function' && zeros instanceof wasmApi.Global ? { sum: sum as Kernel['sum'], zeros } : null;
    } catch {
      k = null; // no SIMD, or a memory we cannot import (shared): the JS loop serves
    }
    kernels.set(memory, k);
  }
  return k ?? undefined;
}

/**
 * Sum (float64) and count of zeros of plain values, in one pass. Unrolled and
 * branch-free: a post-ReLU map is zero at random places, and a branch on it
 * mispredicts half the time (3x slower here).
 */
export function sumAndZeros(v: ArrayLike<number>): { sum: number; zeros: number } {
  let s0 = 0;
  let s1 = 0;
  let z0 = 0;
  let z1 = 0;
  const n = v.length;
  const even = n - (n % 2);
  for (let i = 0; i < even; i += 2) {
    const a = v[i];
    const b = v[i + 1];
    s0 += a;
    s1 += b;
    z0 += +(a === 0);
    z1 += +(b === 0);
  }
  if (even < n) {
    s0 += v[even];
    z0 += +(v[even] === 0);
  }
  return { sum: s0 + s1, zeros: z0 + z1 };
}

/** Which implementation tensorStats uses on the current backend. */
export function statsPath(): 'wasm-simd' | 'js' {
  const backend = tf.backend();
  return backend instanceof BackendWasm && kernelFor(backend) ? 'wasm-simd' : 'js';
}

/** Sum and zero count of a tensor, read in place where the backend allows. */
export function tensorStats(t: tf.Tensor): { sum: number; zeros: number } {
  const backend = tf.backend();
  if (backend instanceof BackendWasm && t.dtype === 'float32') {
    const k = kernelFor(backend);
    if (k) {
      const sum = k.sum(backend.getMemoryOffset(t.dataId), t.size);
      return { sum, zeros: k.zeros.value as number };
    }
    // A view of the heap, valid until the next tfjs op: read at once.
    return sumAndZeros(backend.typedArrayFromHeap(t));
  }
  return sumAndZeros(t.dataSync());
}
