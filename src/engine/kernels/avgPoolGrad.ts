/**
 * AvgPoolGrad for the wasm backend, as a depthwise convolution.
 *
 * tfjs-backend-wasm's kernel is the same generic 3-D pooling template as its
 * MaxPoolGrad: on [32,62,62,16] it took 25 ms for a 2x2 pool and 52 ms for a
 * 3x3 stride-1 one, ten to twenty times the forward pass. Average pooling is
 * a depthwise conv with a constant filter of 1 / (filter area), so its
 * gradient is that conv's input gradient (conv2dBackprop.ts), which runs on
 * XNNPACK: 4-8 ms for the same cases. (A JavaScript scatter loop, tried
 * first, was no faster than the original for overlapping windows.)
 *
 * Semantics are tfjs cpu's: every input position a window covers receives
 * dy / (filter area), the area including the part of the window that lies in
 * the padding.
 */
import * as tf from '@tensorflow/tfjs';
import { inputGradient } from './conv2dBackprop';
import { asTensor, geometryOf, requireInput } from './kernelUtil';

export function makeAvgPoolGradWasm(fallback: tf.KernelFunc | undefined): tf.KernelFunc {
  return (args) => {
    const dy = requireInput(args.inputs, 'dy', tf.AvgPoolGrad);
    const input = requireInput(args.inputs, 'input', tf.AvgPoolGrad);
    if (dy.dtype !== 'float32') {
      if (fallback) return fallback(args);
      throw new Error(`AvgPoolGrad on wasm: ${dy.dtype} gradients are not supported`);
    }
    const a = args.attrs as unknown as tf.AvgPoolGradAttrs;
    const backend = args.backend as tf.KernelBackend;
    return tf.tidy(() => {
      const info = tf.backend_util.computePool2DInfo(
        input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad);
      const box = tf.fill([info.filterHeight, info.filterWidth, info.inChannels, 1], 1 / (info.filterHeight * info.filterWidth));
      return inputGradient('depthwise', asTensor<tf.Rank.R4>(dy, backend), box as tf.Tensor4D, geometryOf(info));
    });
  };
}
