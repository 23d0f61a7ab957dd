/**
 * Gradients of a 2-D convolution for the wasm backend, expressed as forward
 * convolutions so that they run on XNNPACK.
 *
 * - Conv2DBackpropFilter is missing from tfjs-backend-wasm; without it no CNN
 *   trains there.
 * - Conv2DBackpropInput exists but is a scalar C++ loop: on the benchmark
 *   CNN's second conv (dy [32,29,29,32] -> dx [32,31,31,16]) it takes
 *   110-140 ms of CPU, the equivalent XNNPACK conv below 16-18 ms.
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
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
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
 *
 * With a stride above 1 (and no dilation) most of that conv multiplies
 * inserted zeros, s*s times the useful work; for a full conv2d, where that
 * work dominates, inputGradientByPhases avoids it. A depthwise conv is cheap
 * next to the memory passes that the phases add (measured: 6 ms by zero
 * insertion, 21 ms by phases, for dy [32,16,16,64] at stride 2), so it keeps
 * the zero insertion.
 */
export function inputGradient(kind: ConvKind, dy: tf.Tensor4D, filter: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  const strided = g.strideHeight > 1 || g.strideWidth > 1;
  if (kind === 'conv2d' && strided && g.dilationHeight === 1 && g.dilationWidth === 1 && wasmBackend()) {
    return inputGradientByPhases(dy, filter, g);
  }
  const [fh, fw] = filter.shape;
  const [, outHeight, outWidth] = dy.shape;
  const dilated = strideDilate(dy, g.strideHeight, g.strideWidth);
  const top = (fh - 1) * g.dilationHeight - g.padTop;
  const left = (fw - 1) * g.dilationWidth - g.padLeft;
  // strideDilate leaves stride-1 trailing zeros; they count against the far pad.
  const bottom = g.inHeight - 1 + g.padTop - (outHeight - 1) * g.strideHeight - (g.strideHeight - 1);
  const right = g.inWidth - 1 + g.padLeft - (outWidth - 1) * g.strideWidth - (g.strideWidth - 1);
  return flippedConv(kind, dilated, filter, [g.dilationHeight, g.dilationWidth], top, bottom, left, right);
}

/** The stride-1 transposed conv step: `input` convolved with the flipped `filter`. */
function flippedConv(
  kind: ConvKind, input: tf.Tensor4D, filter: tf.Tensor4D, dilations: [number, number],
  top: number, bottom: number, left: number, right: number,
): tf.Tensor4D {
  const [fh, fw, c, o] = filter.shape;
  const flipped = tf.reverse(filter, [0, 1]);
  if (kind === 'conv2d') {
    return convPadded('conv2d', input, tf.transpose(flipped, [0, 1, 3, 2]), [1, 1], dilations, top, bottom, left, right);
  }
  const wD = tf.reshape<tf.Rank.R4>(flipped, [fh, fw, c * o, 1]);
  const perMultiplier = convPadded('depthwise', input, wD, [1, 1], dilations, top, bottom, left, right);
  if (o === 1) return perMultiplier;
  const [n, h, w] = perMultiplier.shape;
  return tf.sum(tf.reshape(perMultiplier, [n, h, w, c, o]), 4) as tf.Tensor4D;
}

/** One residue class of output positions along one axis of a strided conv. */
interface AxisPhase {
  /** Residue r of (position + pad) modulo the stride. */
  residue: number;
  /** First dx position of this phase, in [0, stride). */
  first: number;
  count: number;
  /** Padding (negative: cropping) of dy for this phase's stride-1 conv. */
  before: number;
  after: number;
}

/**
 * Along one axis, dx[y] = sum_t dy[Z - t] * w[r + s*t] where r = (y + pad) mod s
 * and Z = floor((y + pad) / s): each residue r of the output is a stride-1
 * transposed conv of dy with the taps w[r], w[r+s], ... (sub-pixel
 * decomposition). Residues with no taps (filter < stride) stay zero.
 */
function axisPhases(filterSize: number, stride: number, pad: number, inSize: number, outSize: number): AxisPhase[] {
  const phases: AxisPhase[] = [];
  for (let residue = 0; residue < stride; ++residue) {
    const taps = Math.ceil((filterSize - residue) / stride);
    const zMin = Math.max(0, Math.ceil((pad - residue) / stride));
    const zMax = Math.floor((inSize - 1 + pad - residue) / stride);
    if (taps <= 0 || zMax < zMin) continue;
    phases.push({
      residue,
      first: zMin * stride + residue - pad,
      count: zMax - zMin + 1,
      before: taps - 1 - zMin,
      after: zMax - (outSize - 1),
    });
  }
  return phases;
}

/**
 * The input gradient of a strided, undilated conv2d as sh*sw stride-1 convs
 * of dy with sub-filters, interleaved into dx. Measured on dy [32,16,16,64]
 * -> dx [32,32,32,32], 3x3 stride 2: 63 ms by zero insertion, 36 ms here.
 * The interleave writes into the output through its wasm heap view: a
 * strided scatter has no fast kernel on wasm (DepthToSpace and Concat are
 * plain loops there).
 */
function inputGradientByPhases(dy: tf.Tensor4D, filter: tf.Tensor4D, g: ConvGeometry): tf.Tensor4D {
  const backend = wasmBackend() as BackendWasm;
  const [n, outHeight, outWidth] = dy.shape;
  const [fh, fw, c, o] = filter.shape;
  const rows = axisPhases(fh, g.strideHeight, g.padTop, g.inHeight, outHeight);
  const cols = axisPhases(fw, g.strideWidth, g.padLeft, g.inWidth, outWidth);
  const parts: Array<{ result: tf.Tensor4D; row: AxisPhase; col: AxisPhase }> = [];
  for (const row of rows) {
    for (const col of cols) {
      const taps = tf.stridedSlice(filter, [row.residue, col.residue, 0, 0], [fh, fw, c, o],
        [g.strideHeight, g.strideWidth, 1, 1]) as tf.Tensor4D;
      const result = flippedConv('conv2d', dy, taps, [1, 1], row.before, row.after, col.before, col.after);
      parts.push({ result, row, col });
    }
  }
  // Every position belongs to one phase; it is written unless that phase has
  // no taps (a filter smaller than the stride), so zero only in that case.
  const dx = tf.engine().makeTensorFromTensorInfo(
    backend.makeOutput([n, g.inHeight, g.inWidth, c], 'float32'), backend) as tf.Tensor4D;
  // Heap views only now: every allocation above may have grown (and so
  // detached) the wasm memory.
  const out = backend.typedArrayFromHeap(dx) as Float32Array;
  if (rows.length < g.strideHeight || cols.length < g.strideWidth) out.fill(0);
  const rowStride = g.inWidth * c;
  for (const { result, row, col } of parts) {
    const src = backend.typedArrayFromHeap(result) as Float32Array;
    let at = 0;
    for (let b = 0; b < n; ++b) {
      for (let k = 0; k < row.count; ++k) {
        let to = (b * g.inHeight + row.first + k * g.strideHeight) * rowStride + col.first * c;
        for (let l = 0; l < col.count; ++l, to += g.strideWidth * c) {
          for (let d = 0; d < c; ++d) out[to + d] = src[at++];
        }
      }
    }
  }
  return dx;
}

/** The current backend if it is wasm (the only place these kernels are registered). */
function wasmBackend(): BackendWasm | undefined {
  const backend = tf.backend() as Partial<BackendWasm>;
  return typeof backend.typedArrayFromHeap === 'function' ? (backend as BackendWasm) : undefined;
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
