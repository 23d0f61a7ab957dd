/**
 * What an image file is, before a decoder sees it: the format by its magic
 * bytes (never by the extension), the dimensions from the PNG IHDR or the
 * JPEG SOF header (refused above `imageLimits.maxPixels`: a 100 KB PNG can
 * claim 30000x30000 pixels and inflate to 3.6 GB), the PNG colour type and
 * bit depth the standard allows, and the file's structure walked to its end,
 * so that a truncated file gets its own message instead of the decoder's
 * ("There are some read requests waitng on finished stream", "unknown JPEG
 * marker 0"). Also the EXIF orientation, applied by orientImage.
 */
import { EngineError } from './errors';

/** An image as RGB bytes, 3 per pixel, row-major, no padding. */
export interface DecodedImage {
  width: number;
  height: number;
  data: Uint8Array;
  /** The file's own size (after EXIF orientation), when it was decoded reduced (DecodeOptions.fit). */
  original?: { width: number; height: number };
}

export type ImageFormat = 'png' | 'jpeg';

export const imageLimits = {
  /** Pixels we agree to decode: a 48 MP camera photo fits, a bomb does not. */
  maxPixels: 50_000_000,
  /** Bytes of an image file we agree to read. */
  maxFileBytes: 100 * 1024 * 1024,
  /** PNGs of more pixels than this that are decoded reduced (DecodeOptions.fit) are read by pngStream.ts instead of pngjs. */
  streamPixels: 4_000_000,
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

export function u32(b: Uint8Array, o: number): number {
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
export function checkPng(bytes: Uint8Array, name: string): { width: number; height: number; end: number } {
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

export interface DecodeOptions {
  /**
   * Whether a message may quote the file's first bytes ("it starts with
   * …"). False for a file reached through a link to outside the workspace or
   * dataset: a link named cat.png pointing at /etc/shadow must not put its
   * first line into a message. Default true (bytes handed over in memory).
   */
  quote?: boolean;
  /**
   * The size the image is for (a model's input; given the file's own size,
   * after orientation). An image 2x or more larger is decoded reduced by
   * the integer factors floor(size / target) with an area average (the step
   * resizeToTensor would take), so the full-size pixels are held once at
   * most (a large PNG: never, pngStream.ts).
   */
  fit?: (size: { width: number; height: number }) => { width: number; height: number } | undefined;
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

