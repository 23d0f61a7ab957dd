/**
 * Helpers shared by the wasm training kernels: turning the TensorInfos a
 * kernel receives into Tensors that public ops accept, and the padding,
 * cropping and zero-insertion steps that every "gradient as a convolution"
 * needs.
 *
 * The kernels are written with public ops (tf.conv2d, tf.transpose, ...)
 * because on wasm those run on XNNPACK; the engine allows ops inside a kernel
 * (it raises kernelDepth, so nothing is recorded on the gradient tape).
 */
import * as tf from '@tensorflow/tfjs';

export type Pair = [number, number];
/** NHWC padding as tf.conv2d takes it: [[0,0],[top,bottom],[left,right],[0,0]]. */
export type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

/**
 * Views a kernel input as a Tensor for use with ops inside a `tf.tidy`.
 *
 * The engine passes the op's own Tensors in practice, and those are used as
 * they are: the tidy does not own them, so it will not dispose them. A bare
 * TensorInfo (a kernel called by another kernel) gets a Tensor wrapper; the
 * wrapper shares the data, so the backend's reference count is raised to
 * match the decrement that disposing the wrapper (by the tidy) will cause.
 */
export function asTensor<R extends tf.Rank = tf.Rank>(info: tf.TensorInfo, backend: tf.KernelBackend): tf.Tensor<R> {
  if (info instanceof tf.Tensor) return info as tf.Tensor<R>;
  backend.incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info, backend) as tf.Tensor<R>;
}

/**
 * Inserts `sh - 1` zero rows between rows and `sw - 1` zero columns between
 * columns of an NHWC tensor ("stride dilation"), and also after the last
 * row/column: the result is `[n, h*sh, w*sw, c]`, and callers that want the
 * exact `(h-1)*sh + 1` rows take the trailing `sh - 1` from their padding.
 * Done as reshape to 6-D, one pad and reshape back: each is a single fast
 * kernel on wasm, where a strided scatter would not be.
 */
export function strideDilate(x: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  const six = tf.reshape(x, [n, h, 1, w, 1, c]);
  const padded = tf.pad(six, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.reshape(padded, [n, h * sh, w * sw, c]);
}

/** Explicit NHWC padding as tf.conv2d takes it. */
export function explicitPad(top: number, bottom: number, left: number, right: number): ExplicitPadding {
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

/**
 * The numbers of a forward 2-D convolution (or pooling) that its gradients
 * are built from. Taken from tfjs's own `computeConv2DInfo`, so 'same',
 * 'valid', numeric and explicit padding and `dimRoundingMode` all resolve to
 * the pads tfjs used in the forward pass. The output size is not here: the
 * gradients take it from dy (see conv2dBackprop.ts).
 */
export interface ConvGeometry {
  inHeight: number;
  inWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padTop: number;
  padLeft: number;
}

export function geometryOf(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  return {
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

export type ConvKind = 'conv2d' | 'depthwise';

/**
 * Runs a Conv2D or DepthwiseConv2dNative kernel with per-side padding that may
 * be negative: positive amounts go to the kernel as explicit padding (free in
 * XNNPACK), negative ones crop the input first. Gradient convs need both: the
 * near-side pad of an input gradient is `filter - 1 - pad`, negative when an
 * explicit pad exceeds the filter, and rows a strided or 'ceil'-rounded
 * forward conv never read are cut off on the far side.
 *
 * The kernels are invoked directly rather than through tf.conv2d so that a
 * stride and a dilation both above 1 (which the filter gradient of a strided,
 * dilated conv needs, and which XNNPACK supports) are not refused by the op's
 * argument check.
 */
export function convPadded(
  kind: ConvKind,
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: Pair,
  dilations: Pair,
  top: number,
  bottom: number,
  left: number,
  right: number,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const keptHeight = h - Math.max(0, -top) - Math.max(0, -bottom);
  const keptWidth = w - Math.max(0, -left) - Math.max(0, -right);
  if (keptHeight <= 0 || keptWidth <= 0) {
    // Every window lies in the padding: the result is all zeros.
    const outHeight = Math.floor((h + top + bottom - (filter.shape[0] - 1) * dilations[0] - 1) / strides[0]) + 1;
    const outWidth = Math.floor((w + left + right - (filter.shape[1] - 1) * dilations[1] - 1) / strides[1]) + 1;
    const channels = kind === 'conv2d' ? filter.shape[3] : c * filter.shape[3];
    return tf.zeros([n, Math.max(0, outHeight), Math.max(0, outWidth), channels]);
  }
  const input = keptHeight < h || keptWidth < w
    ? tf.slice(x, [0, Math.max(0, -top), Math.max(0, -left), 0], [n, keptHeight, keptWidth, c])
    : x;
  const pad = explicitPad(Math.max(0, top), Math.max(0, bottom), Math.max(0, left), Math.max(0, right));
  if (kind === 'conv2d') {
    return tf.engine().runKernel('Conv2D', { x: input, filter }, {
      strides, pad, dataFormat: 'NHWC', dilations, dimRoundingMode: 'floor',
    }) as tf.Tensor4D;
  }
  return tf.engine().runKernel('DepthwiseConv2dNative', { x: input, filter }, {
    strides, pad, dilations, dimRoundingMode: 'floor',
  }) as tf.Tensor4D;
}

/** A named kernel input; tfjs types them as optional, a kernel needs them. */
export function requireInput(inputs: tf.NamedTensorInfoMap, name: string, kernel: string): tf.TensorInfo {
  const t = inputs[name];
  if (!t) throw new Error(`${kernel}: input '${name}' is missing`);
  return t;
}
