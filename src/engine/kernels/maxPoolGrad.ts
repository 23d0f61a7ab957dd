/**
 * MaxPoolGrad for the wasm backend, as a JavaScript loop over the wasm heap.
 *
 * Why not tfjs-backend-wasm's own kernel:
 * - speed: it runs a generic 3-D pooling template (a lambda per element and a
 *   second pass to scatter); on the benchmark CNN's first pool
 *   ([32,62,62,16] -> [32,31,31,16]) it takes 58-95 ms of CPU, more than the
 *   conv before it. This loop takes about 13 ms.
 * - semantics: it keeps the *last* maximum of a window (`>=`) and starts
 *   from FLT_MIN, the smallest *positive* float, so a window whose values are
 *   all <= 0 (every dead-ReLU window, many after a BatchNorm) records flat
 *   index 0 as its maximum: its gradient is lost, or lands on the tensor's
 *   first element. tfjs's cpu kernel, which this one matches exactly, routes
 *   the gradient to the *first* maximum in row-major window order, starting
 *   from -Infinity with a strict `>`; a window with no value above -Infinity
 *   (all NaN or -Infinity) passes no gradient.
 *
 * Why not built from ops: the mask formulation (input == the upsampled max,
 * first maximum by a position key and a second max-pool) needs Equal, Cast,
 * Maximum and broadcasting kernels that are plain loops on wasm (14 to 400 ms
 * each at this size, measured), and overlapping windows would need a
 * scatter-add. One pass over the input does all cases, with no tensors in
 * between.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { requireInput } from './kernelUtil';

/**
 * dx for dy, the pooled input x and the pool geometry. Exported for the unit
 * tests, which also run it on plain arrays. Overwrites all of `dx`.
 */
export function maxPoolGradInto(
  x: Float32Array,
  dy: Float32Array,
  dx: Float32Array,
  info: tf.backend_util.Conv2DInfo,
): void {
  dx.fill(0);
  const tiles2x2 = info.filterHeight === 2 && info.filterWidth === 2 && info.strideHeight === 2 &&
    info.strideWidth === 2 && info.dilationHeight === 1 && info.dilationWidth === 1 &&
    info.padInfo.top === 0 && info.padInfo.left === 0 &&
    2 * info.outHeight <= info.inHeight && 2 * info.outWidth <= info.inWidth;
  if (tiles2x2) maxPoolGrad2x2(x, dy, dx, info);
  else maxPoolGradAny(x, dy, dx, info);
}

/**
 * The common case, maxPooling2d's default (2x2, stride 2, every window inside
 * the input), unrolled: about twice as fast as the general loop.
 */
function maxPoolGrad2x2(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth } = info;
  const rowStride = inWidth * c;
  let dyAt = 0;
  for (let b = 0; b < batchSize; ++b) {
    for (let yR = 0; yR < outHeight; ++yR) {
      let p0 = (b * inHeight + 2 * yR) * rowStride;
      for (let yC = 0; yC < outWidth; ++yC, p0 += 2 * c) {
        const p1 = p0 + c;
        const p2 = p0 + rowStride;
        const p3 = p2 + c;
        for (let d = 0; d < c; ++d, ++dyAt) {
          // Row-major window order and strict '>' from -Infinity: the first
          // maximum wins, NaN never does (tfjs cpu's maxPoolPositions).
          let best = Number.NEGATIVE_INFINITY;
          let at = -1;
          let v = x[p0 + d];
          if (v > best) { best = v; at = p0 + d; }
          v = x[p1 + d];
          if (v > best) { best = v; at = p1 + d; }
          v = x[p2 + d];
          if (v > best) { best = v; at = p2 + d; }
          v = x[p3 + d];
          if (v > best) { at = p3 + d; }
          if (at >= 0) dx[at] = dy[dyAt];
        }
      }
    }
  }
}

/** Any window, stride, padding and dilation; overlapping windows accumulate. */
function maxPoolGradAny(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth, effectiveFilterHeight, effectiveFilterWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const rowStride = inWidth * c;
  const rowStep = dilationHeight * rowStride;
  const colStep = dilationWidth * c;
  let dyAt = 0;
  for (let b = 0; b < batchSize; ++b) {
    for (let yR = 0; yR < outHeight; ++yR) {
      // The window's rows inside the input, as tfjs cpu clips them.
      const rCorner = yR * strideHeight - padTop;
      let rMin = rCorner;
      while (rMin < 0) rMin += dilationHeight;
      const rows = Math.ceil((Math.min(inHeight, rCorner + effectiveFilterHeight) - rMin) / dilationHeight);
      for (let yC = 0; yC < outWidth; ++yC) {
        const cCorner = yC * strideWidth - padLeft;
        let cMin = cCorner;
        while (cMin < 0) cMin += dilationWidth;
        const cols = Math.ceil((Math.min(inWidth, cCorner + effectiveFilterWidth) - cMin) / dilationWidth);
        const first = (b * inHeight + rMin) * rowStride + cMin * c;
        // Channels outermost within the window: the running maximum stays in
        // locals, and the window's few rows stay in cache across channels.
        for (let d = 0; d < c; ++d, ++dyAt) {
          let best = Number.NEGATIVE_INFINITY;
          let at = -1;
          for (let r = 0, rowAt = first + d; r < rows; ++r, rowAt += rowStep) {
            for (let q = 0, i = rowAt; q < cols; ++q, i += colStep) {
              const v = x[i];
              if (v > best) { best = v; at = i; }
            }
          }
          if (at >= 0) dx[at] += dy[dyAt];
        }
      }
    }
  }
}

/**
 * The kernel. Falls back to `fallback` (tfjs's own wasm kernel) for inputs
 * that are not float32, which max-pool training never produces.
 */
export function makeMaxPoolGradWasm(fallback: tf.KernelFunc | undefined): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs } = args;
    const dy = requireInput(inputs, 'dy', tf.MaxPoolGrad);
    const input = requireInput(inputs, 'input', tf.MaxPoolGrad);
    if (input.dtype !== 'float32' || dy.dtype !== 'float32') {
      if (fallback) return fallback(args);
      throw new Error(`MaxPoolGrad on wasm: ${input.dtype} input is not supported`);
    }
    const a = attrs as unknown as tf.MaxPoolGradAttrs;
    const backend = args.backend as BackendWasm;
    const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
    const out = backend.makeOutput(input.shape, 'float32');
    // Views are taken after makeOutput: allocating may grow the wasm memory,
    // which detaches views made before.
    const dx = backend.typedArrayFromHeap(out) as Float32Array;
    maxPoolGradInto(
      backend.typedArrayFromHeap(input) as Float32Array,
      backend.typedArrayFromHeap(dy) as Float32Array,
      dx,
      info,
    );
    return out;
  };
}
