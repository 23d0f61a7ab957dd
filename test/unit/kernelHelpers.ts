/** What the kernel tests share: seeded inputs, the cpu-vs-wasm comparison at 1e-4, and running a kernel on either backend. */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';

export const TOLERANCE = 1e-4;
export type Backend = 'cpu' | 'wasm';
export type Shape4 = [number, number, number, number];
export type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

/** A seeded generator, so that a failure reproduces. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function randomArray(size: number, seed: number, quantise?: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(size);
  for (let i = 0; i < size; ++i) {
    const v = next() * 2 - 1;
    // Quantised values produce ties, which max-pool gradients must break the
    // same way tfjs's cpu backend does.
    out[i] = quantise ? Math.round(v * quantise) : v;
  }
  return out;
}

export const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'result sizes differ');
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; ++i) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const err = relError(actual, expected);
  assert.ok(Number.isFinite(err) && err <= TOLERANCE, `${what}: relative error ${err} > ${TOLERANCE}`);
}

/** Runs `f` on a backend and returns its results as plain arrays. */
export async function on(backend: Backend, f: () => tf.Tensor[]): Promise<Float32Array[]> {
  // A silent failure to switch would compare cpu with itself.
  assert.ok(await tf.setBackend(backend), `backend ${backend} did not initialise`);
  assert.equal(tf.getBackend(), backend);
  return tf.tidy(f).map((t) => {
    const v = t.dataSync() as Float32Array;
    t.dispose();
    return v;
  });
}

/** Runs `f` on cpu and on wasm and returns both results. */
export async function both(f: () => tf.Tensor[]): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const cpu = await on('cpu', f);
  const wasm = await on('wasm', f);
  return { cpu, wasm };
}

export const kernel = (name: string, inputs: tf.NamedTensorMap, attrs: object): tf.Tensor =>
  tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
