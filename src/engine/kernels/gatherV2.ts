/**
 * GatherV2 for the wasm backend when whole slices are gathered.
 *
 * `model.fit` cuts every batch out of the training tensors with tf.gather
 * along axis 0. tfjs-backend-wasm's Gather is an element-by-element C++ loop
 * with per-element stride arithmetic: gathering 32 rows of 64x64x3 images
 * took 20-120 ms, 10% of a training step of the benchmark CNN. Copying each
 * gathered slice with one TypedArray.set (a memmove) takes well under 1 ms.
 *
 * Handled: batchDims 0, float32/int32 data, slices of at least
 * MIN_SLICE elements. Anything else goes to the original kernel.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { requireInput } from './kernelUtil';

/** Below this, per-slice copies cost more than the original's loop saves. */
const MIN_SLICE = 16;

/**
 * out[o, k, s] = x[o, indices[k], s] for x viewed as [outer, dim, slice].
 * Exported for the unit tests. Throws, as tfjs does, on an index out of range.
 */
export function gatherSlices(
  x: Float32Array | Int32Array,
  indices: Int32Array,
  out: Float32Array | Int32Array,
  outer: number,
  dim: number,
  slice: number,
): void {
  for (let k = 0; k < indices.length; ++k) {
    const index = indices[k];
    if (!(index >= 0 && index < dim)) {
      throw new Error(`GatherV2: the index value ${index} is not in [0, ${dim - 1}]`);
    }
  }
  const n = indices.length;
  for (let o = 0; o < outer; ++o) {
    for (let k = 0; k < n; ++k) {
      const from = (o * dim + indices[k]) * slice;
      out.set(x.subarray(from, from + slice), (o * n + k) * slice);
    }
  }
}

export function makeGatherV2Wasm(fallback: tf.KernelFunc | undefined): tf.KernelFunc {
  return (args) => {
    const x = requireInput(args.inputs, 'x', tf.GatherV2);
    const indices = requireInput(args.inputs, 'indices', tf.GatherV2);
    const a = args.attrs as unknown as tf.GatherV2Attrs;
    const axis = tf.util.parseAxisParam(a.axis, x.shape)[0];
    const slice = x.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
    const handled = (a.batchDims ?? 0) === 0 && (x.dtype === 'float32' || x.dtype === 'int32') &&
      indices.dtype === 'int32' && slice >= MIN_SLICE;
    if (!handled) {
      if (fallback) return fallback(args);
      throw new Error(`GatherV2 on wasm: batchDims ${a.batchDims}, ${x.dtype} data, slices of ${slice} are not supported`);
    }
    const backend = args.backend as BackendWasm;
    const outShape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
    const out = backend.makeOutput(outShape, x.dtype);
    // Views after makeOutput, which may grow (and so detach) the wasm memory.
    gatherSlices(
      backend.typedArrayFromHeap(x) as Float32Array | Int32Array,
      backend.typedArrayFromHeap(indices) as Int32Array,
      backend.typedArrayFromHeap(out) as Float32Array | Int32Array,
      x.shape.slice(0, axis).reduce((p, d) => p * d, 1),
      x.shape[axis],
      slice,
    );
    return out;
  };
}
