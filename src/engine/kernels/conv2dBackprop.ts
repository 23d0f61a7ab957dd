/**
 * Gradients of a 2-D convolution for the wasm backend, expressed as forward
 * convolutions so that they run on XNNPACK.
 *
 * - Conv2DBackpropFilter is missing from tfjs-backend-wasm; without it no CNN
 *   trains there.
 * - Conv2DBackpropInput exists but is a scalar C++ loop: measured on the
 *   benchmark CNN's second conv (dy [32,60,60,32] -> dx [32,62,62,16]) it took
 *   ~810 ms where the equivalent forward conv below takes ~90 ms.
 *
 * Notation (NHWC): x [b,H,W,c], filter w [fh,fw,c,o], dy [b,oh,ow,o];
 * forward y[n,i,j,k] = sum_{p,q,ch} x[n, i*sh + p*dh - top, j*sw + q*dw - left, ch] * w[p,q,ch,k].
 *
 * oh and ow are taken from dy itself, not recomputed from the attributes:
 * tfjs's Conv2D gradient does not pass the forward's dimRoundingMode on, so
 * after a 'ceil'-rounded forward conv the recomputed sizes would be a row
 * short and that row's gradient silently dropped.
 */
import * as tf from '@tensorflow/tfjs';
import { asTensor, ConvGeometry, ConvKind, convPadded, geometryOf, requireInput, strideDilate } from './kernelUtil';

/**
 * dw[p,q,ch,k] = sum_{n,i,j} x[n, p*dh + i*sh - top, q*dw + j*sw - left, ch] * dy[n,i,j,k]
 *
 * which is a convolution of x viewed as c images of b channels ([c,H,W,b])
 * with dy viewed as an oh x ow filter from b to o channels ([oh,ow,b,o]),
 * whose stride is the forward dilation and whose dilation is the forward
 * stride. Its output [c,fh,fw,o] is transposed to the filter layout.
 *
 * `kind: 'depthwise'` is the same identity for a depthwise forward conv with
 * channel multiplier m (dy [b,oh,ow,c*m], dw [fh,fw,c,m]): there only equal
 * channels pair up, so the batch goes into the channels ([1,H,W,b*c] and an
 * [oh,ow,b*c,m] depthwise filter) and is summed out afterwards.
 */
export function filterGradient(kind: ConvKind, x: tf.Tensor4D, dy: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  const [b, , , c] = x.shape;
  const [, outHeight, outWidth, o] = dy.shape;
  // Pad or crop the far side so that the gradient conv yields exactly fh x fw
  // outputs: rows a 'valid' strided conv never read are cut off, and rows a
  // 'ceil'-rounded conv read past the padded input count as zeros.
  const bottom = (outHeight - 1) * g.strideHeight + (g.filterHeight - 1) * g.dilationHeight + 1 - g.inHeight - g.padTop;
  const right = (outWidth - 1) * g.strideWidth + (g.filterWidth - 1) * g.dilationWidth + 1 - g.inWidth - g.padLeft;
  const strides: [number, number] = [g.dilationHeight, g.dilationWidth];
  const dilations: [number, number] = [g.strideHeight, g.strideWidth];
  if (kind === 'conv2d') {
    const xT = tf.transpose(x, [3, 1, 2, 0]);
    const dyT = tf.transpose(dy, [1, 2, 0, 3]);
    const grad = convPadded('conv2d', xT, dyT, strides, dilations, g.padTop, bottom, g.padLeft, right);
    return tf.transpose(grad, [1, 2, 0, 3]);
  }
  const m = o / c;
  const xT = tf.reshape<tf.Rank.R4>(tf.transpose(x, [1, 2, 0, 3]), [1, g.inHeight, g.inWidth, b * c]);
  const dyT = tf.reshape<tf.Rank.R4>(tf.transpose(dy, [1, 2, 0, 3]), [outHeight, outWidth, b * c, m]);
  const perImage = convPadded('depthwise', xT, dyT, strides, dilations, g.padTop, bottom, g.padLeft, right);
  return tf.sum(tf.reshape(perImage, [g.filterHeight, g.filterWidth, b, c, m]), 2) as tf.Tensor4D;
}

/**
 * dx is the "transposed convolution" of dy: dy with sh-1 zeros inserted
 * between rows (sw-1 between columns), padded by (fh-1)*dh - top on the near
 * side, convolved at stride 1 and the forward dilation with the spatially
 * flipped filter whose in/out channels are swapped. The far-side padding is
 * whatever makes the output exactly H x W (negative amounts crop).
 *
 * For depthwise, the flipped filter [fh,fw,c,m] is used as an [fh,fw,c*m,1]
 * depthwise filter on dy's c*m channels, and the m multiplier channels of
 * each input channel are summed.
 */
export function inputGradient(kind: ConvKind, dy: tf.Tensor4D, filter: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  const [fh, fw, c, o] = filter.shape;
  const [, outHeight, outWidth] = dy.shape;
  const flipped = tf.reverse(filter, [0, 1]);
  const dilated = strideDilate(dy, g.strideHeight, g.strideWidth);
  const top = (fh - 1) * g.dilationHeight - g.padTop;
  const left = (fw - 1) * g.dilationWidth - g.padLeft;
  // strideDilate leaves stride-1 trailing zeros; they count against the far pad.
  const bottom = g.inHeight - 1 + g.padTop - (outHeight - 1) * g.strideHeight - (g.strideHeight - 1);
  const right = g.inWidth - 1 + g.padLeft - (outWidth - 1) * g.strideWidth - (g.strideWidth - 1);
  const dilations: [number, number] = [g.dilationHeight, g.dilationWidth];
  if (kind === 'conv2d') {
    const wT = tf.transpose(flipped, [0, 1, 3, 2]);
    return convPadded('conv2d', dilated, wT, [1, 1], dilations, top, bottom, left, right);
  }
  const wD = tf.reshape<tf.Rank.R4>(flipped, [fh, fw, c * o, 1]);
  const perMultiplier = convPadded('depthwise', dilated, wD, [1, 1], dilations, top, bottom, left, right);
  if (o === 1) return perMultiplier;
  const [n, h, w] = perMultiplier.shape;
  return tf.sum(tf.reshape(perMultiplier, [n, h, w, c, o]), 4) as tf.Tensor4D;
}

type Format = 'NHWC' | 'NCHW';

const toNhwc = (t: tf.Tensor4D, format: Format): tf.Tensor4D => (format === 'NCHW' ? tf.transpose(t, [0, 2, 3, 1]) : t);

/** Conv2DBackpropFilter: inputs {x, dy}, attrs as tfjs-core's Conv2DBackpropFilterAttrs. */
export const conv2DBackpropFilterWasm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const x = requireInput(inputs, 'x', tf.Conv2DBackpropFilter);
  const dy = requireInput(inputs, 'dy', tf.Conv2DBackpropFilter);
  const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const be = backend as tf.KernelBackend;
  return tf.tidy(() => {
    const format: Format = a.dataFormat ?? 'NHWC';
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode,
      false, tf.backend_util.convertConv2DDataFormat(format));
    const x4 = toNhwc(asTensor<tf.Rank.R4>(x, be), format);
    const dy4 = toNhwc(asTensor<tf.Rank.R4>(dy, be), format);
    return filterGradient('conv2d', x4, dy4, geometryOf(info));
  });
};

/** Conv2DBackpropInput: inputs {dy, filter}, attrs as tfjs-core's Conv2DBackpropInputAttrs. */
export const conv2DBackpropInputWasm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const dy = requireInput(inputs, 'dy', tf.Conv2DBackpropInput);
  const filter = requireInput(inputs, 'filter', tf.Conv2DBackpropInput);
  const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const be = backend as tf.KernelBackend;
  return tf.tidy(() => {
    const format: Format = a.dataFormat ?? 'NHWC';
    const info = tf.backend_util.computeConv2DInfo(
      a.inputShape, filter.shape as [number, number, number, number], a.strides, 1, a.pad, a.dimRoundingMode,
      false, tf.backend_util.convertConv2DDataFormat(format));
    const dy4 = toNhwc(asTensor<tf.Rank.R4>(dy, be), format);
    const dx = inputGradient('conv2d', dy4, asTensor<tf.Rank.R4>(filter, be), geometryOf(info));
    return format === 'NCHW' ? tf.transpose(dx, [0, 3, 1, 2]) : dx;
  });
};
