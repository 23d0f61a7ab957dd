/**
 * Random augmentations of training batches, as tf ops on the whole batch:
 * horizontal flip, rotation, zoom (a random crop scaled back up), brightness
 * and contrast. Each image gets its own random parameters, drawn from a seeded
 * Rng, so a run repeats exactly for a given seed and epoch. Validation batches
 * are never augmented.
 *
 * Flip, rotation and zoom are one projective transform per image
 * (tf.image.transform takes a matrix per image, where rotateWithOffset and
 * flipLeftRight take one setting for the whole batch), so the pixels are
 * resampled once, not three times. Out-of-image corners are filled by
 * reflection, as Keras's RandomRotation and RandomZoom do by default.
 *
 * The batch arrives normalised (the model's input). Brightness and contrast
 * are defined on 0-255 pixels and every normalisation here is a per-channel
 * affine map of pixels, so both are applied in normalised units through that
 * map (`PixelMap`) and clipped to the normalised image of [0, 255]: the
 * result is exactly what augmenting the pixels first would give.
 */
import * as tf from '@tensorflow/tfjs';
import { toInputTensor, type DecodedImage } from '../image';
import { Rng } from '../random';
import type { Normalization } from '../../protocol/model';
import type { AugmentSettings } from '../../protocol/recipe';
import { deriveSeed } from './dataset';

/** normalised = pixel * scale[c] + offset[c], per channel. */
export interface PixelMap {
  scale: number[];
  offset: number[];
}

/** Plain 0-255 values. */
export const identityPixelMap = (channels = 3): PixelMap => ({ scale: new Array<number>(channels).fill(1), offset: new Array<number>(channels).fill(0) });

/**
 * The affine map that toInputTensor applies for `normalization`, measured on a
 * black and a white pixel rather than restated here, so the two cannot drift.
 */
export function pixelMapOf(normalization: Normalization, channels = 3): PixelMap {
  const probe = (v: number) => {
    const t = toInputTensor({ width: 1, height: 1, data: new Uint8Array([v, v, v]) }, 1, 1, normalization, channels);
    const values = Array.from(t.dataSync());
    t.dispose();
    return values;
  };
  const black = probe(0);
  const white = probe(255);
  return { scale: white.map((w, c) => (w - black[c]) / 255), offset: black };
}

export function augmentationEnabled(a: AugmentSettings): boolean {
  return a.flip.enabled || a.rotate.enabled || a.zoom.enabled || a.brightness.enabled || a.contrast.enabled;
}

/** The stream of epoch `epoch` (0-based): the same seed and epoch give the same augmentations. */
export function augmentRng(seed: number, epoch: number): Rng {
  return new Rng(deriveSeed(seed, 'augment', epoch));
}

/** One image's random draw. */
interface Draw {
  flip: boolean;
  angle: number;
  zoom: number;
  tx: number;
  ty: number;
  brightness: number;
  contrast: number;
}

/**
 * Every image draws the same seven numbers whatever is enabled, so turning
 * brightness on does not change which images are flipped.
 */
function draw(rng: Rng, a: AugmentSettings): Draw {
  const u = Array.from({ length: 7 }, () => rng.next());
  const zoom = a.zoom.enabled ? 1 - a.zoom.amount * u[2] : 1;
  return {
    flip: a.flip.enabled && u[0] < 0.5,
    angle: a.rotate.enabled ? ((2 * u[1] - 1) * a.rotate.degrees * Math.PI) / 180 : 0,
    zoom,
    // The crop of relative size `zoom` stays inside the image: offsets up to (1 - zoom) / 2 of it.
    tx: a.zoom.enabled ? 2 * u[3] - 1 : 0,
    ty: a.zoom.enabled ? 2 * u[4] - 1 : 0,
    brightness: a.brightness.enabled ? (2 * u[5] - 1) * a.brightness.amount : 0,
    contrast: a.contrast.enabled ? 1 + (2 * u[6] - 1) * a.contrast.amount : 1,
  };
}

/**
 * The row [a0, a1, a2, b0, b1, b2, 0, 0] that maps an output pixel (x, y) to
 * the input point it samples: about the image centre, mirror x if flipped,
 * rotate, scale by `zoom` (< 1 samples a smaller region: zooming in), then
 * shift the crop.
 */
function transformRow(d: Draw, height: number, width: number): number[] {
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const f = d.flip ? -1 : 1;
  const cos = Math.cos(d.angle) * d.zoom;
  const sin = Math.sin(d.angle) * d.zoom;
  const a0 = cos * f;
  const a1 = -sin;
  const b0 = sin * f;
  const b1 = cos;
  const tx = d.tx * (1 - d.zoom) * cx;
  const ty = d.ty * (1 - d.zoom) * cy;
  return [a0, a1, cx + tx - a0 * cx - a1 * cy, b0, b1, cy + ty - b0 * cx - b1 * cy, 0, 0];
}

/**
 * Augments a batch [n, h, w, c] of normalised images. Returns a new tensor
 * (the input is not disposed). Draws n images' parameters from `rng`.
 */
export function augmentBatch(xs: tf.Tensor4D, settings: AugmentSettings, rng: Rng, map: PixelMap): tf.Tensor4D {
  const [n, height, width, channels] = xs.shape;
  const draws = Array.from({ length: n }, () => draw(rng, settings));
  return tf.tidy(() => {
    let out: tf.Tensor4D = xs;
    const geometric = draws.some((d) => d.flip || d.angle !== 0 || d.zoom !== 1);
    if (geometric) {
      const rows = draws.flatMap((d) => transformRow(d, height, width));
      // A flip alone lands on pixel centres: nearest is exact and cheaper.
      const smooth = settings.rotate.enabled || settings.zoom.enabled;
      out = tf.image.transform(out, tf.tensor2d(rows, [n, 8]), smooth ? 'bilinear' : 'nearest', 'reflect');
    }
    if (settings.contrast.enabled || settings.brightness.enabled) {
      const scale = tf.tensor1d(map.scale.slice(0, channels));
      if (settings.contrast.enabled) {
        // Per image and channel, around the image's own mean (as tf.image.adjustContrast).
        const f = tf.tensor4d(draws.map((d) => d.contrast), [n, 1, 1, 1]);
        const mean = tf.mean(out, [1, 2], true);
        out = tf.add(tf.mul(tf.sub(out, mean), f), mean);
      }
      if (settings.brightness.enabled) {
        // `amount` is a fraction of the 0-255 range, mapped into normalised units per channel.
        const d = tf.tensor4d(draws.map((x) => x.brightness * 255), [n, 1, 1, 1]);
        out = tf.add(out, tf.mul(d, scale));
      }
      const lo = map.offset.slice(0, channels);
      const hi = lo.map((o, c) => o + 255 * map.scale[c]);
      out = tf.minimum(tf.maximum(out, tf.tensor1d(lo.map((l, c) => Math.min(l, hi[c])))), tf.tensor1d(hi.map((h, c) => Math.max(h, lo[c]))));
    }
    return out === xs ? tf.clone(xs) : out;
  });
}

/**
 * `n` augmented versions of one image, as uint8 RGB, for the inspector's
 * preview of the settings. The same seed gives the same previews.
 */
export function previewAugmentations(img: DecodedImage, settings: AugmentSettings, n: number, seed: number): DecodedImage[] {
  const rng = new Rng(deriveSeed(seed, 'preview'));
  const out = tf.tidy(() => {
    const one = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32').toFloat();
    const batch = tf.tile(tf.expandDims(one, 0), [n, 1, 1, 1]) as tf.Tensor4D;
    return augmentBatch(batch, settings, rng, identityPixelMap(3));
  });
  const values = out.dataSync();
  out.dispose();
  const size = img.width * img.height * 3;
  return Array.from({ length: n }, (_, k) => ({
    width: img.width,
    height: img.height,
    data: Uint8Array.from(values.subarray(k * size, (k + 1) * size), (v) => Math.min(255, Math.max(0, Math.round(v)))),
  }));
}
