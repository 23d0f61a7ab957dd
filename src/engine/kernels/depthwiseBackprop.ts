/**
 * Gradients of a depthwise 2-D convolution, which tfjs-backend-wasm does not
 * have at all (fine-tuning a MobileNet, the usual Teachable Machine base,
 * needs them as soon as a depthwise layer is unfrozen). Both are built as
 * depthwise convolutions; see conv2dBackprop.ts for the identities.
 *
 * Unlike tfjs's cpu kernels, which compute their indices without the
 * dilation, these honour `dilations` (the tests check them against an
 * equivalent undilated conv on cpu).
 */
import * as tf from '@tensorflow/tfjs';
import { filterGradient, inputGradient } from './conv2dBackprop';
import { asTensor, geometryOf, requireInput } from './kernelUtil';

export const depthwiseConv2dNativeBackpropFilterWasm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const x = requireInput(inputs, 'x', tf.DepthwiseConv2dNativeBackpropFilter);
  const dy = requireInput(inputs, 'dy', tf.DepthwiseConv2dNativeBackpropFilter);
  const a = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const be = backend as tf.KernelBackend;
  return tf.tidy(() => {
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], a.filterShape, a.strides, a.dilations ?? 1, a.pad,
      a.dimRoundingMode, true);
    return filterGradient('depthwise', asTensor<tf.Rank.R4>(x, be), asTensor<tf.Rank.R4>(dy, be), geometryOf(info));
  });
};

export const depthwiseConv2dNativeBackpropInputWasm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const dy = requireInput(inputs, 'dy', tf.DepthwiseConv2dNativeBackpropInput);
  const filter = requireInput(inputs, 'filter', tf.DepthwiseConv2dNativeBackpropInput);
  const a = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const be = backend as tf.KernelBackend;
  return tf.tidy(() => {
    const info = tf.backend_util.computeConv2DInfo(
      a.inputShape, filter.shape as [number, number, number, number], a.strides, a.dilations ?? 1, a.pad,
      a.dimRoundingMode, true);
    return inputGradient('depthwise', asTensor<tf.Rank.R4>(dy, be), asTensor<tf.Rank.R4>(filter, be), geometryOf(info));
  });
};
