/**
 * Images in and out of the engine: PNG and JPEG decoding into plain RGB bytes,
 * preprocessing into the tensor a model expects, and PNG encoding for exports.
 *
 * Images come from the user's workspace and datasets from strangers, so the
 * container is checked before a decoder sees it (imageFormat.ts), and files
 * are read as io/safeRead.ts reads.
 *
 * Alpha: transparent pixels are composited over black, i.e. RGB * alpha. This
 * is what a browser hands tfjs for fully transparent pixels (canvas
 * getImageData returns 0,0,0,0 there), so Teachable Machine and other tfjs web
 * apps see the same pixels; for opaque pixels every pipeline agrees.
 */
import * as tf from '@tensorflow/tfjs';
import * as jpeg from 'jpeg-js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { EngineError } from './errors';
import { imageLimits, orientImage, probeImage, type DecodedImage, type DecodeOptions } from './imageFormat';
import { decodePngReduced } from './pngStream';
import { displayRoot, rel } from './io/files';
import { isInside, readRegularFile, UnreadableFile } from './io/safeRead';
import type { Normalization } from '../protocol/model';

export { imageLimits, orientImage, probeImage, sniffImageFormat, type DecodedImage, type DecodeOptions, type ImageFormat } from './imageFormat';

/** RGBA (straight alpha) to RGB composited over black. */
function rgbaToRgb(rgba: Uint8Array, width: number, height: number): Uint8Array {
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const a = rgba[j + 3];
    if (a === 255) {
      out[i * 3] = rgba[j];
      out[i * 3 + 1] = rgba[j + 1];
      out[i * 3 + 2] = rgba[j + 2];
    } else {
      out[i * 3] = Math.round((rgba[j] * a) / 255);
      out[i * 3 + 1] = Math.round((rgba[j + 1] * a) / 255);
      out[i * 3 + 2] = Math.round((rgba[j + 2] * a) / 255);
    }
  }
  return out;
}


/**
 * Decodes a PNG (any bit depth, grey, palette, alpha; 16-bit scaled to 8 by
 * rounding v * 255 / 65535) or a baseline/progressive JPEG (turned as its
 * EXIF orientation says) into RGB bytes.
 * `name` is how messages refer to the file.
 */
export function decodeImage(bytes: Uint8Array, name: string, options: DecodeOptions = {}): DecodedImage {
  const { format, width, height, orientation, end } = probeImage(bytes, name, options);
  const turned = orientation >= 5 ? { width: height, height: width } : { width, height };
  const target = options.fit?.(turned);
  const fh = target ? Math.max(1, Math.floor(turned.height / target.height)) : 1;
  const fw = target ? Math.max(1, Math.floor(turned.width / target.width)) : 1;
  if (fh === 1 && fw === 1) return decodeFull(bytes, name, format, width, height, orientation, end);
  if (format === 'png' && width * height > imageLimits.streamPixels) {
    const reduced = decodePngReduced(bytes, name, end, fh, fw);
    if (reduced) return { ...reduced, original: turned };
  }
  const full = decodeFull(bytes, name, format, width, height, orientation, end);
  const r = areaReduce(full, fh, fw);
  return { width: r.width, height: r.height, data: pixelsToBytes(r.data), original: turned };
}

function decodeFull(bytes: Uint8Array, name: string, format: 'png' | 'jpeg', width: number, height: number, orientation: number, end: number): DecodedImage {
  // RGBA from pngjs (composited below), RGB straight from jpeg-js (no 4-byte copy of a large photo).
  let pixels: Uint8Array;
  let channels: 3 | 4;
  let w: number;
  let h: number;
  try {
    if (format === 'png') {
      // Up to IEND only: bytes some tools append after it would make pngjs
      // fail. CRC checks on: a damaged IDAT can otherwise inflate to garbage
      // without any error (seen in tests: the garbage varied between runs).
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, end), { checkCRC: true });
      pixels = png.data;
      channels = 4;
      w = png.width;
      h = png.height;
    } else {
      const img = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: false,
        // Tolerant (jpeg-js's default): real cameras write small deviations
        // that browsers accept; truncation was ruled out above.
        tolerantDecoding: true,
        maxResolutionInMP: imageLimits.maxPixels / 1e6,
        maxMemoryUsageInMB: 1024,
      });
      pixels = img.data;
      channels = 3;
      w = img.width;
      h = img.height;
    }
  } catch (e) {
    // A TypeError or RangeError from inside the decoder ("Cannot set properties of undefined") means damaged data, nothing more useful.
    const why = e instanceof TypeError || e instanceof RangeError ? 'its data is damaged' : (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
    // pngjs stops reading at a failed CRC, then reports the unread rest as
    // "unrecognised content at end of stream"; nothing else follows IEND here.
    if (format === 'png' && /crc error|unrecognised content at end of stream/i.test(why)) throw new EngineError('bad-image', `${name} is corrupt: a PNG chunk fails its checksum. Copy the image again or re-export it.`);
    throw new EngineError('bad-image', `${name} could not be decoded as ${format === 'png' ? 'PNG' : 'JPEG'} (${why}); the file is corrupt or uses a variant Layer Lens cannot read. Re-save it as an 8-bit PNG or a baseline JPEG.`);
  }
  if (w !== width || h !== height || pixels.length !== w * h * channels) {
    throw new EngineError('bad-image', `${name}: the decoder returned ${w}x${h} pixels for a header of ${width}x${height}; the file is corrupt.`);
  }
  return orientImage({ width: w, height: h, data: channels === 4 ? rgbaToRgb(pixels, w, h) : pixels }, orientation);
}

/**
 * An image file's bytes, read as io/safeRead.ts reads (ordinary files only,
 * the size it claims, a time limit), and whether messages may quote them:
 * only when no link leads from the named path to outside the workspace.
 */
export async function readImageBytes(file: string, shown: string): Promise<{ bytes: Uint8Array; quote: boolean }> {
  const abs = path.resolve(file);
  try {
    const real = await fs.promises.realpath(abs).catch(() => abs);
    const bytes = await readRegularFile(abs, {
      shown,
      maxBytes: imageLimits.maxFileBytes,
      tooLarge: (size) => new EngineError('bad-image', `${shown} is ${(size / 1048576).toFixed(0)} MB, over the ${imageLimits.maxFileBytes / 1048576} MB limit for an image; resize or re-compress it.`),
    });
    return { bytes, quote: real === abs || isInside(real, displayRoot()) };
  } catch (e) {
    if (e instanceof UnreadableFile) {
      if (e.kind === 'missing') throw new EngineError('not-found', `image ${shown} ${e.detail}.`);
      if (e.kind === 'special' && e.detail.includes('a folder')) throw new EngineError('bad-image', `${shown} is not a file; pick a PNG or JPEG image.`);
      throw new EngineError('bad-image', `${shown} ${e.detail}; pick a PNG or JPEG image.`);
    }
    throw e;
  }
}

/** Reads and decodes an image file (reduced for `fit`, see DecodeOptions); messages show the path relative to the workspace. */
export async function readImageFile(file: string, fit?: DecodeOptions['fit']): Promise<DecodedImage> {
  const shown = rel(path.resolve(file));
  const { bytes, quote } = await readImageBytes(file, shown);
  return decodeImage(bytes, shown, { quote, fit });
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];
/**
 * ITU-R BT.601 luma, the weights tf.image.rgbToGrayscale and PIL use, scaled
 * to sum to exactly 1 (as printed they sum to 0.9999, which made a white
 * pixel 0.9999 instead of 1).
 */
const LUMA_PRINTED = [0.2989, 0.587, 0.114];
const LUMA = LUMA_PRINTED.map((w) => w / (LUMA_PRINTED[0] + LUMA_PRINTED[1] + LUMA_PRINTED[2]));

/**
 * Luma of [h, w, 3] pixels as [h, w, 1], computed as g + wr (r - g) + wb (b - g):
 * the same value as wr r + wg g + wb b, but exact for every grey pixel
 * (r = g = b gives g itself), so 0 stays 0 and 255 stays 255.
 */
function luma(x: tf.Tensor3D): tf.Tensor3D {
  const [r, g, b] = tf.split(x, 3, -1);
  return tf.add(g, tf.add(tf.mul(tf.sub(r, g), LUMA[0]), tf.mul(tf.sub(b, g), LUMA[2]))) as tf.Tensor3D;
}

/**
 * `img` resized to height x width as float32 [h, w, 3], values 0-255.
 *
 * When the image is 2x or more larger than the target along an axis, it is
 * first reduced by the integer factor with an area average (avgPool), then
 * resized with bilinear interpolation and half-pixel centres (as TF2's
 * tf.image.resize and PIL do). Plain bilinear from a 4000 px photo to 224 px
 * samples 4 of every ~300 pixels and aliases; the area step keeps every
 * pixel's contribution.
 */
export function resizeToTensor(img: DecodedImage, height: number, width: number): tf.Tensor3D {
  if (!(height > 0 && width > 0)) throw new EngineError('bad-input', `the model input size ${height}x${width} is not a valid image size.`);
  if (height * width > imageLimits.maxInputPixels) {
    throw new EngineError(
      'bad-input',
      `the model input size ${height}x${width} is over the ${Math.sqrt(imageLimits.maxInputPixels)}x${Math.sqrt(imageLimits.maxInputPixels)} pixels Layer Lens feeds a model; the model.json declares an input far larger than any image model uses.`,
    );
  }
  const fh = Math.max(1, Math.floor(img.height / height));
  const fw = Math.max(1, Math.floor(img.width / width));
  // The area step in plain JS on the bytes: as int32 and float32 tensors, a 7000x7000 photo took 1.2 GB before it was reduced.
  const reduced = fh >= 2 || fw >= 2 ? areaReduce(img, fh, fw) : { data: Float32Array.from(img.data), height: img.height, width: img.width };
  return tf.tidy(() => {
    let x: tf.Tensor3D = tf.tensor3d(reduced.data, [reduced.height, reduced.width, 3]);
    if (x.shape[0] !== height || x.shape[1] !== width) x = tf.image.resizeBilinear(x, [height, width], false, true);
    return x;
  });
}

/** Averages of fh x fw blocks of RGB bytes (a 'valid' average pool: leftover rows and columns dropped), as float32. */
export function areaReduce(img: DecodedImage, fh: number, fw: number): { data: Float32Array; height: number; width: number } {
  const H = Math.floor(img.height / fh);
  const W = Math.floor(img.width / fw);
  const out = new Float32Array(H * W * 3);
  const row = new Float64Array(W * 3);
  const inv = 1 / (fh * fw);
  const src = img.data;
  const stride = img.width * 3;
  for (let oy = 0; oy < H; oy++) {
    row.fill(0);
    for (let y = oy * fh; y < (oy + 1) * fh; y++) {
      let i = y * stride;
      for (let ox = 0; ox < W; ox++) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let k = 0; k < fw; k++, i += 3) {
          r += src[i];
          g += src[i + 1];
          b += src[i + 2];
        }
        row[ox * 3] += r;
        row[ox * 3 + 1] += g;
        row[ox * 3 + 2] += b;
      }
    }
    for (let j = 0; j < W * 3; j++) out[oy * W * 3 + j] = row[j] * inv;
  }
  return { data: out, height: H, width: W };
}

/**
 * Pixels (0-255, [h, w, 3]) as the model expects them: zeroOne x/255,
 * minusOneOne x/127.5-1, imagenet (x/255-mean)/std per channel, raw x.
 * One-channel models get luma; their imagenet mean/std are the luma-weighted
 * averages of the RGB ones.
 */
export function normalizePixels(pixels: tf.Tensor3D, normalization: Normalization, channels = 3): tf.Tensor3D {
  if (channels !== 1 && channels !== 3) {
    throw new EngineError('bad-input', `the model expects ${channels} input channels; Layer Lens feeds images as RGB (3 channels) or greyscale (1 channel) only.`);
  }
  return tf.tidy(() => {
    let x = pixels;
    let mean = [0, 0, 0];
    let std = [1, 1, 1];
    let scale = 1;
    switch (normalization) {
      case 'zeroOne':
        scale = 1 / 255;
        break;
      case 'minusOneOne':
        scale = 1 / 127.5;
        mean = [1, 1, 1];
        break;
      case 'imagenet':
        scale = 1 / 255;
        mean = IMAGENET_MEAN;
        std = IMAGENET_STD;
        break;
      case 'raw':
        break;
    }
    if (channels === 1) {
      x = luma(x);
      // Luma-weighted averages of the RGB constants.
      const dot = (v: number[]) => v.reduce((a, b, i) => a + b * LUMA[i], 0);
      mean = [dot(mean)];
      std = [dot(std)];
    }
    if (normalization === 'raw') return channels === 1 ? x : tf.clone(x);
    // (x * scale - mean) / std in two ops.
    const a = tf.tensor1d(std.map((s) => scale / s));
    const b = tf.tensor1d(mean.map((m, i) => -m / std[i]));
    return tf.add(tf.mul(x, a), b) as tf.Tensor3D;
  });
}

/** The tensor a model sees for `img`: [height, width, channels] float32 (see resizeToTensor, normalizePixels). */
export function toInputTensor(img: DecodedImage, height: number, width: number, normalization: Normalization, channels = 3): tf.Tensor3D {
  if (channels !== 1 && channels !== 3) {
    throw new EngineError('bad-input', `the model expects ${channels} input channels; Layer Lens feeds images as RGB (3 channels) or greyscale (1 channel) only.`);
  }
  const pixels = resizeToTensor(img, height, width);
  try {
    return normalizePixels(pixels, normalization, channels);
  } finally {
    pixels.dispose();
  }
}

/** Float pixels (0-255) to bytes, rounded and clamped. */
export function pixelsToBytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length);
  // A Uint8ClampedArray would round half to even; this rounds half up, as the rest of the engine does.
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
  }
  return out;
}

/** `img` resized as the model sees it, before normalisation. */
export function resizeImage(img: DecodedImage, height: number, width: number): DecodedImage {
  if (img.height === height && img.width === width) return img;
  const t = resizeToTensor(img, height, width);
  const data = pixelsToBytes(t.dataSync());
  t.dispose();
  return { width, height, data };
}

/** Encodes RGB (channels 3) or RGBA (channels 4) bytes as an 8-bit PNG. */
export function encodePng(width: number, height: number, pixels: Uint8Array, channels: 3 | 4): Uint8Array {
  if (pixels.length !== width * height * channels) {
    throw new EngineError('internal', `encodePng: ${pixels.length} bytes for ${width}x${height}x${channels}.`);
  }
  const png = new PNG({ width, height, colorType: channels === 4 ? 6 : 2, inputColorType: channels === 4 ? 6 : 2, inputHasAlpha: channels === 4 });
  png.data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const out = PNG.sync.write(png, { colorType: channels === 4 ? 6 : 2, inputColorType: channels === 4 ? 6 : 2, inputHasAlpha: channels === 4 });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** A PNG data URL of an image file, at most `size` pixels on its longer side (thumbnails in the inspector). */
export async function imageThumbnail(file: string, size: number, name = file, quote?: boolean): Promise<string> {
  const read = await readImageBytes(file, name);
  const img = decodeImage(read.bytes, name, { quote: quote ?? read.quote, fit: () => ({ width: size, height: size }) });
  const scale = Math.min(1, size / Math.max(img.width, img.height));
  const small = resizeImage(img, Math.max(1, Math.round(img.height * scale)), Math.max(1, Math.round(img.width * scale)));
  return `data:image/png;base64,${Buffer.from(encodePng(small.width, small.height, small.data, 3)).toString('base64')}`;
}
