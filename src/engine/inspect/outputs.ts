/**
 * What a model's outputs are, and how the inspector shows each: class
 * predictions (a probability distribution, or labelled scores), plain values
 * (a regression, a few unlabelled scores), or an image (an autoencoder's or a
 * denoiser's output, shown next to its difference to the input). A model may
 * have several outputs; one of them is shown at a time.
 */
import * as tf from '@tensorflow/tfjs';
import type { OutputImage, OutputInfo } from '../../protocol/inspect';
import type { Normalization } from '../../protocol/model';
import { pixelsToBytes } from '../image';

/** Unlabelled non-probability outputs up to this many units are values (a regression, a few scores), more are class scores (logits). */
const MAX_VALUE_UNITS = 16;

/** Whether `v` is a probability distribution (softmax-like). */
export function isDistribution(v: ArrayLike<number>): boolean {
  let sum = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!(x >= 0 && x <= 1)) return false;
    sum += x;
  }
  return v.length > 1 && Math.abs(sum - 1) < 1e-3;
}

/** An output [h, w], [h, w, 1] or [h, w, 3] at least 4x4 is an image. */
function isImageShape(shape: number[]): boolean {
  const [h, w, c] = shape;
  if (shape.length === 2) return h >= 4 && w >= 4;
  return shape.length === 3 && h >= 4 && w >= 4 && (c === 1 || c === 3);
}

export function outputKind(shape: number[], values: ArrayLike<number>, labelled: boolean): OutputInfo['kind'] {
  if (isImageShape(shape)) return 'image';
  if (shape.length !== 1) return 'values';
  if (isDistribution(values) || labelled) return 'classes';
  return shape[0] <= MAX_VALUE_UNITS ? 'values' : 'classes';
}

/** The inverse of normalizePixels' affine map, per channel: value -> pixel = value * a + b. */
function pixelMap(normalization: Normalization, channels: number): { a: number[]; b: number[] } {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const luma = [0.2989, 0.587, 0.114].map((w) => w / 0.9999);
  const grey = (v: number[]) => [v.reduce((s, x, i) => s + x * luma[i], 0)];
  switch (normalization) {
    case 'zeroOne':
      return { a: new Array<number>(channels).fill(255), b: new Array<number>(channels).fill(0) };
    case 'minusOneOne':
      return { a: new Array<number>(channels).fill(127.5), b: new Array<number>(channels).fill(127.5) };
    case 'imagenet': {
      const m = channels === 1 ? grey(mean) : mean;
      const s = channels === 1 ? grey(std) : std;
      return { a: s.map((x) => x * 255), b: m.map((x) => x * 255) };
    }
    case 'raw':
      return { a: new Array<number>(channels).fill(1), b: new Array<number>(channels).fill(0) };
  }
}

/**
 * An image-shaped output as RGB bytes in the input's pixel scale (the
 * inverse of the preprocessing), and, when it has the input's shape, the
 * difference |output - input| in the same scale (grey bytes, brighter is
 * more different) with its mean in pixel units.
 */
export async function outputImage(y: tf.Tensor, input: tf.Tensor, normalization: Normalization): Promise<OutputImage> {
  const shape = y.shape.slice(1);
  const [height, width] = shape;
  const channels = shape.length === 3 ? shape[2] : 1;
  const { a, b } = pixelMap(normalization, channels);
  const [pixels, diff] = tf.tidy(() => {
    const img = tf.reshape(tf.cast(y, 'float32'), [height, width, channels]);
    const px = tf.add(tf.mul(img, tf.tensor1d(a)), tf.tensor1d(b));
    const rgb = channels === 1 ? tf.tile(px, [1, 1, 3]) : px;
    const sameShape = input.size === y.size && input.shape.slice(1).reduce((p, d) => p * d, 1) === height * width * channels;
    const d = sameShape ? tf.mul(tf.abs(tf.sub(img, tf.reshape(tf.cast(input, 'float32'), [height, width, channels]))), tf.tensor1d(a.map(Math.abs))) : undefined;
    return [rgb, d ? tf.mean(d, -1) : undefined];
  });
  const rgb = pixelsToBytes(await pixels.data());
  pixels.dispose();
  if (!diff) return { width, height, rgb };
  const dv = await diff.data();
  diff.dispose();
  let sum = 0;
  for (const v of dv) sum += v;
  return { width, height, rgb, diff: pixelsToBytes(dv), meanAbsDiff: dv.length ? sum / dv.length : 0 };
}
