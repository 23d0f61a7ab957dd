/**
 * Images in and out of the engine: PNG and JPEG decoding into plain RGB bytes,
 * preprocessing into the tensor a model expects, and PNG encoding for exports.
 *
 * Images come from the user's workspace and datasets from strangers, so the
 * container is checked before a decoder sees it: the format is told by its
 * magic bytes (never by the extension), the dimensions are read from the PNG
 * IHDR or the JPEG SOF header and refused above `imageLimits.maxPixels`
 * (a 100 KB PNG can claim 30000x30000 pixels and inflate to 3.6 GB), and the
 * file's structure is walked to its end so that a truncated file gets its own
 * message instead of the decoder's ("There are some read requests waitng on
 * finished stream", "unknown JPEG marker 0").
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
import { displayRoot, rel } from './io/files';
import { isInside, readRegularFile, UnreadableFile } from './io/safeRead';
import type { Normalization } from '../protocol/model';

/** An image as RGB bytes, 3 per pixel, row-major, no padding. */
export interface DecodedImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

export const imageLimits = {
  /** Pixels we agree to decode: a 48 MP camera photo fits, a bomb does not. */
  maxPixels: 50_000_000,
  /** Bytes of an image file we agree to read. */
  maxFileBytes: 100 * 1024 * 1024,
  /**
   * Pixels of a model input we agree to resize an image to (4096x4096). A
   * model.json can declare any input size; at 100000x100000 the resize alone
   * took 93 s and 5 GB before wasm failed with "memory access out of bounds".
   */
  maxInputPixels: 4096 * 4096,
};

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

/** PNG or JPEG by magic bytes, else undefined. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (startsWith(bytes, PNG_MAGIC)) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  return undefined;
}

/** The first bytes as the user would recognise them: printable text, else hex. */
function describeStart(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 16);
  const printable = head.every((b) => (b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d);
  if (printable) return `"${Buffer.from(head).toString('latin1').replace(/\s+/g, ' ').trim()}"`;
  return `bytes ${Array.from(head.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ')}`;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) + b[o + 1];
}

function truncated(name: string, what: string): EngineError {
  return new EngineError('bad-image', `${name} is truncated (${what}); the copy or download was probably interrupted. Copy the image again or re-export it.`);
}

function checkPixels(name: string, width: number, height: number): void {
  if (width === 0 || height === 0) throw new EngineError('bad-image', `${name} claims a size of ${width}x${height} pixels; the file is corrupt.`);
  const mp = (width * height) / 1e6;
  if (width * height > imageLimits.maxPixels) {
    throw new EngineError(
      'bad-image',
      `${name} claims ${width}x${height} pixels (${mp.toFixed(0)} megapixels), over the ${imageLimits.maxPixels / 1e6} megapixel limit; refused before decoding (a decompression bomb, or a scan far larger than a model needs). Resize it first.`,
    );
  }
}

/**
 * Reads the PNG header and walks the chunk list to IEND without inflating
 * anything: dimensions for the bomb check, truncation for a clear message.
 */
function checkPng(bytes: Uint8Array, name: string): { width: number; height: number; end: number } {
  // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), depth, colour type...
  if (bytes.length < 8 + 8 + 13 + 4) throw truncated(name, `only ${bytes.length} bytes, not even a PNG header`);
  if (u32(bytes, 8) !== 13 || Buffer.from(bytes.subarray(12, 16)).toString('latin1') !== 'IHDR') {
    throw new EngineError('bad-image', `${name} starts like a PNG but has no IHDR header; the file is corrupt.`);
  }
  const width = u32(bytes, 16);
  const height = u32(bytes, 20);
  checkPixels(name, width, height);
  checkPngFormat(name, bytes[24], bytes[25], bytes[28]);
  let o = 8;
  let sawData = false;
  let dataBytes = 0;
  for (;;) {
    if (o + 8 > bytes.length) throw truncated(name, sawData ? 'it ends inside its image data' : 'it ends before any image data');
    const len = u32(bytes, o);
    const type = Buffer.from(bytes.subarray(o + 4, o + 8)).toString('latin1');
    // A damaged chunk type would print control characters into the message.
    if (o + 12 + len > bytes.length) throw truncated(name, /^[A-Za-z]{4}$/.test(type) ? `it ends inside its ${type} chunk` : 'it ends inside a damaged chunk');
    if (type === 'IDAT') {
      sawData = true;
      dataBytes += len;
    }
    if (type === 'IEND') break;
    o += 12 + len;
  }
  if (!sawData) throw new EngineError('bad-image', `${name} is a PNG without image data (no IDAT chunk); the file is corrupt.`);
  // Deflate compresses at most about 1032:1, so less data than this cannot hold the pixels the header claims
  // (a damaged header: decoding would allocate and fill the claimed size for nothing).
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[bytes[25]];
  if (channels !== undefined && dataBytes * 1100 < height * (1 + Math.ceil((width * channels * bytes[24]) / 8))) {
    throw new EngineError('bad-image', `${name} is damaged: ${dataBytes} bytes of image data cannot hold the ${width}x${height} pixels its header claims. Copy the image again or re-export it.`);
  }
  return { width, height, end: o + 12 };
}

/** Bit depths the PNG standard allows for each colour type. */
const pngDepths: Record<number, { name: string; depths: number[] }> = {
  0: { name: 'greyscale', depths: [1, 2, 4, 8, 16] },
  2: { name: 'RGB', depths: [8, 16] },
  3: { name: 'palette', depths: [1, 2, 4, 8] },
  4: { name: 'greyscale with alpha', depths: [8, 16] },
  6: { name: 'RGBA', depths: [8, 16] },
};

/** The IHDR's colour type, bit depth and interlace method, which the decoder would otherwise misread (a depth of 3 "fails its checksum"). */
function checkPngFormat(name: string, depth: number, colorType: number, interlace: number): void {
  const t = pngDepths[colorType];
  if (!t) throw new EngineError('bad-image', `${name} is a PNG of unknown colour type ${colorType} (the standard has 0, 2, 3, 4 and 6); the file is damaged.`);
  if (!t.depths.includes(depth)) {
    throw new EngineError('bad-image', `${name} is a ${t.name} PNG with an unsupported bit depth of ${depth} (the standard allows ${t.depths.join(', ')}); the file is damaged or was written by a faulty encoder.`);
  }
  if (interlace > 1) throw new EngineError('bad-image', `${name} is a PNG with unknown interlace method ${interlace}; the file is damaged.`);
}

/** SOF markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC). */
function isSof(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/**
 * Reads the JPEG markers up to the first scan: dimensions from SOF for the bomb
 * check. Then looks for the end-of-image marker after the scan: inside
 * entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an
 * FF D9 after the first SOS can only be the real end (an EXIF thumbnail's EOI
 * comes before it).
 */
function checkJpeg(bytes: Uint8Array, name: string): { width: number; height: number; orientation: number } {
  let o = 2;
  let size: { width: number; height: number } | undefined;
  let orientation = 1;
  for (;;) {
    while (o < bytes.length && bytes[o] === 0xff && bytes[o + 1] === 0xff) o++; // fill bytes
    if (o + 4 > bytes.length) throw truncated(name, size ? 'it ends before its image data' : 'it ends before its frame header');
    if (bytes[o] !== 0xff) throw new EngineError('bad-image', `${name}: the JPEG marker at byte ${o} is missing; the file is corrupt.`);
    const marker = bytes[o + 1];
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      o += 2;
      continue;
    }
    if (marker === 0xd9) throw truncated(name, 'it ends before its image data');
    const len = u16(bytes, o + 2);
    if (o + 2 + len > bytes.length) throw truncated(name, 'it ends inside a header segment');
    if (marker === 0xe1) orientation = exifOrientation(bytes.subarray(o + 4, o + 2 + len)) ?? orientation;
    if (isSof(marker)) {
      if (len < 8) throw new EngineError('bad-image', `${name}: the JPEG frame header is too short; the file is corrupt.`);
      const height = u16(bytes, o + 5);
      const width = u16(bytes, o + 7);
      if (height === 0) throw new EngineError('bad-image', `${name} leaves its height to a DNL marker, which Layer Lens does not read; re-save the image with a common editor.`);
      checkPixels(name, width, height);
      size = { width, height };
    }
    if (marker === 0xda) {
      if (!size) throw new EngineError('bad-image', `${name} has image data before its frame header; the file is corrupt.`);
      break;
    }
    o += 2 + len;
  }
  // Every 8x8 block costs at least a bit, so a smaller file cannot hold the pixels its header claims
  // (a damaged header: jpeg-js would take seconds and hundreds of MB to decode garbage).
  if (bytes.length * 1024 < size.width * size.height) {
    throw new EngineError('bad-image', `${name} is damaged: ${bytes.length} bytes cannot hold the ${size.width}x${size.height} pixels its header claims. Copy the image again or re-export it.`);
  }
  for (let i = bytes.length - 2; i > o; i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return { ...size, orientation };
  }
  throw truncated(name, 'it has no end-of-image marker after its image data');
}

/**
 * The EXIF Orientation tag (1-8) of an APP1 segment's payload, if it has one.
 * Phones store photos as the sensor saw them and this tag says how to turn
 * them; every viewer (VS Code's included) and browser applies it, so the
 * model must see the turned image too, or the maps would not line up with
 * the picture the user knows.
 */
function exifOrientation(app1: Uint8Array): number | undefined {
  if (app1.length < 14 || Buffer.from(app1.subarray(0, 6)).toString('latin1') !== 'Exif\0\0') return undefined;
  const tiff = app1.subarray(6);
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return undefined;
  const r16 = (o: number) => (little ? tiff[o] | (tiff[o + 1] << 8) : (tiff[o] << 8) | tiff[o + 1]);
  const r32 = (o: number) => (little ? (r16(o) | (r16(o + 2) << 16)) >>> 0 : ((r16(o) << 16) | r16(o + 2)) >>> 0);
  const ifd = r32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const count = r16(ifd);
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > tiff.length) return undefined;
    if (r16(e) === 0x0112) {
      const v = r16(e + 8);
      return v >= 1 && v <= 8 ? v : undefined;
    }
  }
  return undefined;
}

/** Applies EXIF orientation 2-8 to RGB pixels (1 is as stored). */
export function orientImage(img: DecodedImage, orientation: number): DecodedImage {
  if (orientation < 2 || orientation > 8) return img;
  const { width: w, height: h, data } = img;
  const swap = orientation >= 5;
  const W = swap ? h : w;
  const H = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: [sx, sy] = [w - 1 - x, y]; break; // mirror horizontally
        case 3: [sx, sy] = [w - 1 - x, h - 1 - y]; break; // rotate 180
        case 4: [sx, sy] = [x, h - 1 - y]; break; // mirror vertically
        case 5: [sx, sy] = [y, x]; break; // transpose
        case 6: [sx, sy] = [y, h - 1 - x]; break; // rotate 90 clockwise
        case 7: [sx, sy] = [w - 1 - y, h - 1 - x]; break; // transverse
        default: [sx, sy] = [w - 1 - y, x]; break; // 8: rotate 90 counter-clockwise
      }
      const d = (y * W + x) * 3;
      const src = (sy * w + sx) * 3;
      out[d] = data[src];
      out[d + 1] = data[src + 1];
      out[d + 2] = data[src + 2];
    }
  }
  return { width: W, height: H, data: out };
}

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

export interface DecodeOptions {
  /**
   * Whether a message may quote the file's first bytes ("it starts with
   * …"). False for a file reached through a link to outside the workspace or
   * dataset: a link named cat.png pointing at /etc/shadow must not put its
   * first line into a message. Default true (bytes handed over in memory).
   */
  quote?: boolean;
}

/** Width and height from the header, after the same checks decodeImage makes. */
export function probeImage(bytes: Uint8Array, name: string, options: DecodeOptions = {}): { format: ImageFormat; width: number; height: number; orientation: number; end: number } {
  if (bytes.length === 0) throw new EngineError('bad-image', `${name} is empty (0 bytes); the copy or download may have failed.`);
  const format = sniffImageFormat(bytes);
  if (!format) {
    const start = options.quote === false ? '' : ` (it starts with ${describeStart(bytes)})`;
    throw new EngineError('bad-image', `${name} is not a PNG or JPEG image${start}; Layer Lens reads PNG and JPEG files.`);
  }
  if (format === 'png') {
    const { width, height, end } = checkPng(bytes, name);
    return { format, width, height, orientation: 1, end };
  }
  return { format, ...checkJpeg(bytes, name), end: bytes.length };
}

/**
 * Decodes a PNG (any bit depth, grey, palette, alpha; 16-bit scaled to 8 by
 * rounding v * 255 / 65535) or a baseline/progressive JPEG (turned as its
 * EXIF orientation says) into RGB bytes.
 * `name` is how messages refer to the file.
 */
export function decodeImage(bytes: Uint8Array, name: string, options: DecodeOptions = {}): DecodedImage {
  const { format, width, height, orientation, end } = probeImage(bytes, name, options);
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

/** Reads and decodes an image file; messages show the path relative to the workspace. */
export async function readImageFile(file: string): Promise<DecodedImage> {
  const shown = rel(path.resolve(file));
  const { bytes, quote } = await readImageBytes(file, shown);
  return decodeImage(bytes, shown, { quote });
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
  const img = decodeImage(read.bytes, name, { quote: quote ?? read.quote });
  const scale = Math.min(1, size / Math.max(img.width, img.height));
  const small = resizeImage(img, Math.max(1, Math.round(img.height * scale)), Math.max(1, Math.round(img.width * scale)));
  return `data:image/png;base64,${Buffer.from(encodePng(small.width, small.height, small.data, 3)).toString('base64')}`;
}
