/**
 * A PNG decoded straight into the size a model needs. pngjs holds the
 * inflated scanlines, an unfiltered copy and an RGBA bitmap of the full image
 * (a 143 KB PNG of 7000x7000 took 1.58 GB with the resize after it); here the
 * scanlines are inflated once (the PNG's own decoded bytes: no more than the
 * RGB image for 8-bit colour), unfiltered in place, and each row is turned
 * into RGB and added into the sums of its block of an area average, so the
 * full-size RGB image never exists. The pixels are exactly those of pngjs
 * followed by compositing over black (image.ts): 16-bit and low bit depths
 * scaled by floor(v * 255 / max + 0.5), palettes and tRNS transparency as
 * pngjs reads them; a test compares the two on every colour type and depth.
 *
 * Interlaced (Adam7) images are not handled here (undefined: the caller
 * decodes them in full).
 */
import * as zlib from 'node:zlib';
import { EngineError } from './errors';
import { u32, type DecodedImage } from './imageFormat';

const channelsOf: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

let crcTable: Uint32Array | undefined;
function crc32(data: Uint8Array): number {
  const native = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32;
  if (native) return native(data) >>> 0;
  crcTable ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let c = 0xffffffff;
  for (const b of data) c = crcTable[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function undecodable(name: string, why: string): EngineError {
  return new EngineError('bad-image', `${name} could not be decoded as PNG (${why}); the file is corrupt or uses a variant Layer Lens cannot read. Re-save it as an 8-bit PNG or a baseline JPEG.`);
}

/** Unfilters row `y` of `buf` in place (rows of 1 + rowBytes bytes; the previous row already unfiltered). */
function unfilter(buf: Uint8Array, y: number, rowBytes: number, bpp: number, name: string): void {
  const o = y * (rowBytes + 1);
  const f = buf[o];
  const cur = o + 1;
  const prev = y > 0 ? o - rowBytes : -1;
  switch (f) {
    case 0:
      return;
    case 1:
      for (let i = bpp; i < rowBytes; i++) buf[cur + i] = (buf[cur + i] + buf[cur + i - bpp]) & 255;
      return;
    case 2:
      if (prev >= 0) for (let i = 0; i < rowBytes; i++) buf[cur + i] = (buf[cur + i] + buf[prev + i]) & 255;
      return;
    case 3:
      for (let i = 0; i < rowBytes; i++) {
        const left = i >= bpp ? buf[cur + i - bpp] : 0;
        const up = prev >= 0 ? buf[prev + i] : 0;
        buf[cur + i] = (buf[cur + i] + ((left + up) >> 1)) & 255;
      }
      return;
    case 4:
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? buf[cur + i - bpp] : 0;
        const b = prev >= 0 ? buf[prev + i] : 0;
        const c = i >= bpp && prev >= 0 ? buf[prev + i - bpp] : 0;
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        buf[cur + i] = (buf[cur + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 255;
      }
      return;
    default:
      throw undecodable(name, `unknown filter type ${f} in row ${y}`);
  }
}

/**
 * Decodes the PNG `bytes` (checked by imageFormat.ts checkPng; `end` is past
 * IEND) into RGB averaged over fh x fw blocks (a 'valid' average: leftover
 * rows and columns dropped), rounded to bytes. Undefined for an interlaced PNG.
 */
export function decodePngReduced(bytes: Uint8Array, name: string, end: number, fh: number, fw: number): DecodedImage | undefined {
  const width = u32(bytes, 16);
  const height = u32(bytes, 20);
  const depth = bytes[24];
  const colorType = bytes[25];
  if (bytes[28] !== 0) return undefined;
  const ch = channelsOf[colorType];
  let palette: Uint8Array | undefined;
  let trns: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  for (let o = 8; o + 12 <= end; ) {
    const len = u32(bytes, o);
    const type = Buffer.from(bytes.subarray(o + 4, o + 8)).toString('latin1');
    if (crc32(bytes.subarray(o + 4, o + 8 + len)) !== u32(bytes, o + 8 + len)) {
      throw new EngineError('bad-image', `${name} is corrupt: a PNG chunk fails its checksum. Copy the image again or re-export it.`);
    }
    const data = bytes.subarray(o + 8, o + 8 + len);
    if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') trns = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    o += 12 + len;
  }
  const rowBytes = Math.ceil((width * ch * depth) / 8);
  const bpp = Math.max(1, (ch * depth) >> 3);
  let buf: Uint8Array;
  try {
    // One inflate of all the image data: the scanlines, h x (1 + rowBytes) bytes. As pngjs reads it: the
    // zlib stream's 2-byte header skipped and its Adler-32 not checked (the chunks' CRCs were), the end not required.
    const z = Buffer.concat(idat);
    if (z.length < 2 || (z[0] & 15) !== 8 || ((z[0] << 8) | z[1]) % 31 !== 0 || z[1] & 32) throw new Error('its zlib header is damaged');
    buf = zlib.inflateRawSync(z.subarray(2), { maxOutputLength: height * (rowBytes + 1) + 1024, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch (e) {
    throw undecodable(name, (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200));
  }
  if (buf.length < height * (rowBytes + 1)) throw undecodable(name, `its image data ends after ${Math.floor(buf.length / (rowBytes + 1))} of ${height} rows`);
  if (colorType === 3 && !palette) throw undecodable(name, 'it has no palette');
  const max = (1 << depth) - 1;
  const scale = (v: number) => (depth === 8 ? v : Math.floor((v * 255) / max + 0.5));
  // Transparent colour (tRNS for grey and RGB): raw samples, as pngjs compares them.
  const tc = trns && colorType === 0 && trns.length >= 2 ? [(trns[0] << 8) | trns[1]] : trns && colorType === 2 && trns.length >= 6 ? [(trns[0] << 8) | trns[1], (trns[2] << 8) | trns[3], (trns[4] << 8) | trns[5]] : undefined;
  const entries = palette ? Math.floor(palette.length / 3) : 0;

  const W = Math.floor(width / fw);
  const H = Math.floor(height / fh);
  const out = new Uint8Array(W * H * 3);
  const sums = new Float64Array(W * 3);
  const rgb = new Uint8Array(width * 3);
  const inv = 1 / (fh * fw);
  const sample = (row: number, idx: number): number => {
    if (depth === 8) return buf[row + idx];
    if (depth === 16) return (buf[row + 2 * idx] << 8) | buf[row + 2 * idx + 1];
    const bit = idx * depth;
    return (buf[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & max;
  };
  for (let y = 0; y < height; y++) {
    unfilter(buf, y, rowBytes, bpp, name);
    if (y >= H * fh) continue;
    const row = y * (rowBytes + 1) + 1;
    for (let x = 0; x < W * fw; x++) {
      let r: number;
      let g: number;
      let b: number;
      let a: number;
      if (colorType === 3) {
        const i = sample(row, x);
        if (i >= entries) throw undecodable(name, `index ${i} not in palette`);
        [r, g, b] = [palette![3 * i], palette![3 * i + 1], palette![3 * i + 2]];
        a = trns && i < trns.length ? trns[i] : 255;
      } else {
        const s0 = sample(row, x * ch);
        if (colorType === 0 || colorType === 4) {
          r = g = b = s0;
          a = colorType === 4 ? sample(row, x * ch + 1) : max;
          if (tc && s0 === tc[0]) r = g = b = a = 0;
        } else {
          r = s0;
          g = sample(row, x * ch + 1);
          b = sample(row, x * ch + 2);
          a = colorType === 6 ? sample(row, x * ch + 3) : max;
          if (tc && r === tc[0] && g === tc[1] && b === tc[2]) r = g = b = a = 0;
        }
        [r, g, b, a] = [scale(r), scale(g), scale(b), scale(a)];
      }
      if (a !== 255) [r, g, b] = [Math.round((r * a) / 255), Math.round((g * a) / 255), Math.round((b * a) / 255)];
      rgb[3 * x] = r;
      rgb[3 * x + 1] = g;
      rgb[3 * x + 2] = b;
    }
    if (fh === 1 && fw === 1) {
      out.set(rgb.subarray(0, W * 3), y * W * 3);
      continue;
    }
    for (let ox = 0, i = 0; ox < W; ox++) {
      for (let k = 0; k < fw; k++, i += 3) {
        sums[3 * ox] += rgb[i];
        sums[3 * ox + 1] += rgb[i + 1];
        sums[3 * ox + 2] += rgb[i + 2];
      }
    }
    if (y % fh === fh - 1) {
      const oy = (y - fh + 1) / fh;
      for (let j = 0; j < W * 3; j++) out[oy * W * 3 + j] = Math.round(sums[j] * inv);
      sums.fill(0);
    }
  }
  return { width: W, height: H, data: out };
}
