/**
 * Sum for the wasm backend when the reduced axes are the leading ones.
 *
 * That is the bias gradient of every conv and dense layer (dy [b,h,w,c]
 * summed over b, h, w). tfjs-backend-wasm reduces only innermost axes, so it
 * first transposes the whole tensor ([b,h,w,c] -> [c,b,h,w]) and then sums:
 * 7-40 ms for the benchmark CNN's first layer. Accumulating the rows in place
 * reads the tensor once, without the transposed copy (~3 ms).
 *
 * Handled: float32, axes 0..k-1 with k < rank. Anything else (innermost axes,
 * which the original does without a transpose, or int32) goes to the original.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { requireInput } from './kernelUtil';

/**
 * out[j] = sum_i x[i * inner + j] for x viewed as [rows, inner], accumulated
 * in double precision like tfjs's cpu Sum. Exported for the unit tests.
 */
export function sumRows(x: Float32Array, out: Float32Array, rows: number, inner: number): void {
  const acc = new Float64Array(inner);
  const n = rows * inner;
  let at = 0;
  // Four rows per pass: a quarter of the accumulator traffic, which is what
  // bounds this loop when rows are short (a conv's channels: 16-64).
  for (const block = 4 * inner; at + block <= n; at += block) {
    for (let j = 0, a = at; j < inner; ++j, ++a) {
      acc[j] += (x[a] + x[a + inner]) + (x[a + 2 * inner] + x[a + 3 * inner]);
    }
  }
  for (; at < n; at += inner) {
    for (let j = 0; j < inner; ++j) acc[j] += x[at + j];
  }
  out.set(acc);
}

/** Whether `axes` (sorted, normalised) are exactly 0..k-1 for some k < rank. */
function leadingAxes(axes: number[], rank: number): boolean {
  return axes.length > 0 && axes.length < rank && axes.every((axis, i) => axis === i);
}

export function makeSumWasm(fallback: tf.KernelFunc | undefined): tf.KernelFunc {
  return (args) => {
    const x = requireInput(args.inputs, 'x', tf.Sum);
    const a = args.attrs as unknown as tf.SumAttrs;
    const axes = tf.util.parseAxisParam(a.axis, x.shape).sort((p, q) => p - q);
    if (x.dtype !== 'float32' || !leadingAxes(axes, x.shape.length)) {
      if (fallback) return fallback(args);
      throw new Error(`Sum on wasm: ${x.dtype} over axes ${axes} of rank ${x.shape.length} is not supported`);
    }
    const backend = args.backend as BackendWasm;
    const kept = x.shape.slice(axes.length);
    const outShape = a.keepDims ? [...axes.map(() => 1), ...kept] : kept;
    const out = backend.makeOutput(outShape, 'float32');
    const rows = x.shape.slice(0, axes.length).reduce((p, d) => p * d, 1);
    const inner = kept.reduce((p, d) => p * d, 1);
    // Views after makeOutput, which may grow (and so detach) the wasm memory.
    sumRows(backend.typedArrayFromHeap(x) as Float32Array, backend.typedArrayFromHeap(out) as Float32Array, rows, inner);
    return out;
  };
}
