/**
 * Helpers shared by the wasm training kernels: turning the TensorInfos a
 * kernel receives into Tensors that public ops accept, and the padding and
 * zero-insertion steps that every "gradient as a convolution" needs.
 *
 * The kernels are written with public ops (tf.conv2d, tf.transpose, ...)
 * because on wasm those run on XNNPACK; the engine allows ops inside a kernel
 * (it raises kernelDepth, so nothing is recorded on the gradient tape).
 */
import * as tf from '@tensorflow/tfjs';

export type Pair = [number, number];
/** NHWC padding as tf.conv2d takes it: [[0,0],[top,bottom],[left,right],[0,0]]. */
export type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

/** A stride, dilation or filter size given as `n` or `[h, w]`. */
export function pair(v: number | readonly number[] | undefined, fallback = 1): Pair {
  if (v === undefined) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  return [v[0], v[1]];
}

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
 * Pads (positive amounts) or crops (negative amounts) the two spatial axes of
 * an NHWC tensor. Gradient convolutions need both: a conv's output gradient
 * is padded by `filter - 1 - pad`, which goes negative when an explicit pad
 * is larger than the filter, and trailing rows that a strided conv never
 * read must be cut off.
 */
export function padOrCrop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  let t = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = t.shape;
    const t0 = Math.max(0, -top);
    const l0 = Math.max(0, -left);
    const hKeep = h - t0 - Math.max(0, -bottom);
    const wKeep = w - l0 - Math.max(0, -right);
    if (hKeep <= 0 || wKeep <= 0) {
      // Everything is cropped away; what is left is the padding alone.
      return tf.zeros([n, Math.max(0, top) + Math.max(0, bottom) + Math.max(0, hKeep),
        Math.max(0, left) + Math.max(0, right) + Math.max(0, wKeep), c]);
    }
    t = tf.slice(t, [0, t0, l0, 0], [n, hKeep, wKeep, c]);
  }
  const pt = Math.max(0, top);
  const pb = Math.max(0, bottom);
  const pl = Math.max(0, left);
  const pr = Math.max(0, right);
  if (pt + pb + pl + pr > 0) {
    t = tf.pad(t, [[0, 0], [pt, pb], [pl, pr], [0, 0]]);
  }
  return t;
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
 * the pads tfjs used in the forward pass.
 */
export interface ConvGeometry {
  inHeight: number;
  inWidth: number;
  outHeight: number;
  outWidth: number;
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
    outHeight: info.outHeight,
    outWidth: info.outWidth,
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
 * XNNPACK), negative ones crop the input first. The kernels are invoked
 * directly rather than through tf.conv2d so that a stride and a dilation both
 * above 1 (which a gradient conv of a dilated, strided forward conv needs,
 * and which XNNPACK supports) are not refused by the op's argument check.
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
  let input = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    input = padOrCrop(x, Math.min(0, top), Math.min(0, bottom), Math.min(0, left), Math.min(0, right));
  }
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
