import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { before, describe, it } from 'node:test';
import { EngineError } from '../../src/engine/errors';
import { decodeImage, encodePng, imageLimits, orientImage, readImageFile, resizeImage, toInputTensor, type DecodedImage } from '../../src/engine/image';
import * as zlib from 'node:zlib';
import { fixture, fixturePixel } from '../fixtures/models';
import { rejectsWith, setup } from './helpers';

const img = (name: string) => fixture('images', name);

function throwsWith(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.code, code, `wrong code; message was: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** CRC-32 as PNG uses it (zlib's crc32 is Node 22+). */
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function pixel(d: DecodedImage, x: number, y: number): number[] {
  const o = (y * d.width + x) * 3;
  return [d.data[o], d.data[o + 1], d.data[o + 2]];
}

describe('image decoding', () => {
  before(setup);

  it('decodes an 8-bit RGB PNG exactly', async () => {
    const d = await readImageFile(img('rgb.png'));
    assert.equal(d.width, 20);
    assert.equal(d.height, 12);
    assert.equal(d.data.length, 20 * 12 * 3);
    for (let y = 0; y < 12; y++) for (let x = 0; x < 20; x++) assert.deepEqual(pixel(d, x, y), fixturePixel(x, y), `pixel ${x},${y}`);
  });

  it('tells the format by magic bytes, not the extension', async () => {
    const d = await readImageFile(img('png-named.jpg'));
    assert.deepEqual(pixel(d, 7, 5), fixturePixel(7, 5));
  });

  it('scales 16-bit grey to 8 bits by rounding v * 255 / 65535, into equal R, G, B', async () => {
    const d = await readImageFile(img('gray16.png'));
    for (let y = 0; y < 12; y++) {
      for (let x = 0; x < 20; x++) {
        const v = Math.round(((x * 3000 + y * 100) * 255) / 65535);
        assert.deepEqual(pixel(d, x, y), [v, v, v], `pixel ${x},${y}`);
      }
    }
  });

  it('expands a palette', async () => {
    const d = await readImageFile(img('palette.png'));
    const colours = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [250, 250, 250],
    ];
    for (let y = 0; y < 12; y++) for (let x = 0; x < 20; x++) assert.deepEqual(pixel(d, x, y), colours[(x + y) % 4]);
  });

  it('composites alpha over black', async () => {
    const d = await readImageFile(img('alpha.png'));
    for (let y = 0; y < 12; y++) {
      for (let x = 0; x < 20; x++) {
        const a = x * 13;
        assert.deepEqual(pixel(d, x, y), fixturePixel(x, y).map((c) => Math.round((c * a) / 255)), `pixel ${x},${y}`);
      }
    }
    assert.deepEqual(pixel(d, 0, 3), [0, 0, 0], 'fully transparent is black');
  });

  it('decodes a JPEG to within its compression error', async () => {
    const d = await readImageFile(img('photo.jpg'));
    assert.equal(d.width, 32);
    assert.equal(d.height, 24);
    let err = 0;
    for (let y = 0; y < 24; y++) for (let x = 0; x < 32; x++) pixel(d, x, y).forEach((v, c) => (err += Math.abs(v - fixturePixel(x, y)[c])));
    const mean = err / (32 * 24 * 3);
    assert.ok(mean < 6, `mean absolute error ${mean.toFixed(2)}`);
    assert.ok(mean > 0, 'a JPEG is lossy: an exact match means the pixels did not come from the JPEG');
  });

  it('turns JPEGs as their EXIF orientation says, as viewers do', async () => {
    const plain = fs.readFileSync(img('photo.jpg'));
    const base = decodeImage(plain, 'photo.jpg'); // 32 x 24
    const withExif = (orientation: number, little: boolean) => {
      const tiff = Buffer.alloc(8 + 2 + 12 + 4);
      tiff.write(little ? 'II' : 'MM', 0, 'latin1');
      const w16 = (v: number, o: number) => (little ? tiff.writeUInt16LE(v, o) : tiff.writeUInt16BE(v, o));
      const w32 = (v: number, o: number) => (little ? tiff.writeUInt32LE(v, o) : tiff.writeUInt32BE(v, o));
      w16(42, 2);
      w32(8, 4);
      w16(1, 8); // one IFD entry
      w16(0x0112, 10); // Orientation
      w16(3, 12); // SHORT
      w32(1, 14);
      w16(orientation, 18);
      const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
      const head = Buffer.from([0xff, 0xe1, 0, 0]);
      head.writeUInt16BE(payload.length + 2, 2);
      return Buffer.concat([plain.subarray(0, 2), head, payload, plain.subarray(2)]);
    };
    const corner = (d: DecodedImage, x: number, y: number) => pixel(d, x, y);
    const tl = pixel(base, 0, 0);
    const tr = pixel(base, 31, 0);
    const bl = pixel(base, 0, 23);
    // 6: rotated 90 degrees clockwise: 24 x 32, the old top-left is now top-right, the old bottom-left top-left.
    const r6 = decodeImage(withExif(6, false), 'r6.jpg');
    assert.deepEqual([r6.width, r6.height], [24, 32]);
    assert.deepEqual(corner(r6, 23, 0), tl);
    assert.deepEqual(corner(r6, 0, 0), bl);
    // 8: counter-clockwise: the old top-right is now top-left.
    const r8 = decodeImage(withExif(8, true), 'r8.jpg');
    assert.deepEqual([r8.width, r8.height], [24, 32]);
    assert.deepEqual(corner(r8, 0, 0), tr);
    assert.deepEqual(corner(r8, 0, 31), tl);
    // 3: upside down; 2: mirrored.
    const r3 = decodeImage(withExif(3, true), 'r3.jpg');
    assert.deepEqual(corner(r3, 31, 23), tl);
    assert.deepEqual(corner(decodeImage(withExif(2, false), 'r2.jpg'), 31, 0), tl);
    assert.deepEqual(decodeImage(withExif(1, true), 'r1.jpg'), base);
    // 5 and 7 are 6 and 8 mirrored; composing 6 then 8 gives the original back.
    assert.deepEqual(orientImage(orientImage(base, 6), 8), base);
    assert.deepEqual(corner(orientImage(base, 5), 0, 0), tl);
    assert.deepEqual(corner(orientImage(base, 7), 23, 31), tl);
  });

  it('round-trips RGB and RGBA through encodePng', () => {
    const rgb = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 29) % 256);
    assert.deepEqual(decodeImage(encodePng(5, 3, rgb, 3), 'a.png'), { width: 5, height: 3, data: rgb });
    const rgba = Uint8Array.from({ length: 5 * 3 * 4 }, (_, i) => (i % 4 === 3 ? 255 : (i * 31) % 256));
    const back = decodeImage(encodePng(5, 3, rgba, 4), 'b.png');
    assert.deepEqual(Array.from(back.data), Array.from(rgba).filter((_, i) => i % 4 !== 3));
  });
});

describe('image refusals', () => {
  before(setup);

  it('0-byte file', () => rejectsWith(readImageFile(img('empty.png')), 'bad-image', /empty\.png is empty \(0 bytes\)/));
  it('text named .png', () =>
    rejectsWith(readImageFile(img('text.png')), 'bad-image', /text\.png is not a PNG or JPEG image \(it starts with "hello, I am not"\)/));
  it('binary junk shows hex', () => throwsWith(() => decodeImage(Uint8Array.from([0, 1, 2, 250, 9, 9, 9, 9, 9]), 'x.png'), 'bad-image', /x\.png is not a PNG or JPEG image \(it starts with bytes 00 01 02 fa/));
  it('truncated PNG', () => rejectsWith(readImageFile(img('truncated.png')), 'bad-image', /truncated\.png is truncated \(it ends inside its IDAT chunk\)/));
  it('truncated JPEG', () => rejectsWith(readImageFile(img('truncated.jpg')), 'bad-image', /truncated\.jpg is truncated \(it has no end-of-image marker/));
  it('PNG decompression bomb, refused from its header', () =>
    rejectsWith(readImageFile(img('bomb.png')), 'bad-image', /bomb\.png claims 30000x30000 pixels \(900 megapixels\), over the 50 megapixel limit; refused before decoding/));
  it('JPEG decompression bomb, refused from its header', () =>
    rejectsWith(readImageFile(img('bomb.jpg')), 'bad-image', /bomb\.jpg claims 30000x30000 pixels/));
  it('missing file', () => rejectsWith(readImageFile(img('nope.png')), 'not-found', /image .*nope\.png does not exist/));
  it('a folder', () => rejectsWith(readImageFile(fixture('images')), 'bad-image', /images is not a file/));
  it('file over the size limit, refused before reading', async () => {
    const saved = imageLimits.maxFileBytes;
    imageLimits.maxFileBytes = 100;
    try {
      await rejectsWith(readImageFile(img('rgb.png')), 'bad-image', /rgb\.png is 0 MB, over the .* limit/);
    } finally {
      imageLimits.maxFileBytes = saved;
    }
  });
  it('corrupt compressed data names the file and the decoder', () => {
    const good = fs.readFileSync(img('rgb.png'));
    const bad = Buffer.from(good);
    const idat = bad.indexOf('IDAT');
    for (let i = idat + 6; i < idat + 40; i++) bad[i] ^= 0x5a;
    throwsWith(() => decodeImage(bad, 'broken.png'), 'bad-image', /^broken\.png is corrupt: a PNG chunk fails its checksum/);
    // A PNG with a bad-filter scanline (valid checksums) names the decoder's complaint.
    const rows = [Buffer.from([7, 1, 2, 3])];
    const idatData = zlib.deflateSync(Buffer.concat(rows));
    const weird = Buffer.from(good.subarray(0, idat - 4));
    weird.writeUInt32BE(1, 16);
    weird.writeUInt32BE(1, 20);
    weird.writeUInt32BE(crc32(weird.subarray(12, 29)), 29);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(idatData.length);
    const body = Buffer.concat([Buffer.from('IDAT'), idatData]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    const iend = good.subarray(good.length - 12);
    throwsWith(() => decodeImage(Buffer.concat([weird, len, body, crc, iend]), 'filter.png'), 'bad-image', /^filter\.png could not be decoded as PNG \(Unrecognised filter type - 7\); the file is corrupt/);
  });

  it('ignores bytes after IEND, as browsers do', () => {
    const good = fs.readFileSync(img('rgb.png'));
    const d = decodeImage(Buffer.concat([good, Buffer.from('trailing junk from some tool')]), 'tail.png');
    assert.deepEqual(pixel(d, 3, 4), fixturePixel(3, 4));
  });
});

describe('toInputTensor', () => {
  before(setup);
  // 2x3 image with known values.
  const small: DecodedImage = { width: 3, height: 2, data: Uint8Array.from([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 255, 128, 1]) };

  const cases: [string, (v: number, c: number) => number][] = [
    ['raw', (v) => v],
    ['zeroOne', (v) => v / 255],
    ['minusOneOne', (v) => v / 127.5 - 1],
    ['imagenet', (v, c) => (v / 255 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c]],
  ];
  for (const [norm, f] of cases) {
    it(`normalises ${norm} at the same size`, () => {
      const before = tf.memory().numTensors;
      const t = toInputTensor(small, 2, 3, norm as 'raw');
      assert.deepEqual(t.shape, [2, 3, 3]);
      const got = t.dataSync();
      small.data.forEach((v, i) => assert.ok(Math.abs(got[i] - f(v, i % 3)) < 1e-5, `value ${i}: ${got[i]} vs ${f(v, i % 3)}`));
      t.dispose();
      assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
    });
  }

  it('gives one-channel models BT.601 luma', () => {
    const t = toInputTensor(small, 2, 3, 'zeroOne', 1);
    assert.deepEqual(t.shape, [2, 3, 1]);
    const got = t.dataSync();
    for (let p = 0; p < 6; p++) {
      const [r, g, b] = small.data.subarray(p * 3, p * 3 + 3);
      const luma = (0.2989 * r + 0.587 * g + 0.114 * b) / 0.9999 / 255;
      assert.ok(Math.abs(got[p] - luma) < 1e-5, `pixel ${p}`);
    }
    t.dispose();
  });

  it('keeps grey pixels exact for one-channel models: 0 and 255 give exactly 0 and 1 (and -1 and 1), any grey v gives v', () => {
    const greys: DecodedImage = { width: 4, height: 1, data: Uint8Array.from([0, 0, 0, 255, 255, 255, 128, 128, 128, 37, 37, 37]) };
    const exact = (norm: 'zeroOne' | 'minusOneOne' | 'raw', want: number[]) => {
      const t = toInputTensor(greys, 1, 4, norm, 1);
      assert.deepEqual(Array.from(t.dataSync()), want.map((v) => Math.fround(v)), norm);
      t.dispose();
    };
    exact('raw', [0, 255, 128, 37]);
    const z = toInputTensor(greys, 1, 4, 'zeroOne', 1).dataSync();
    assert.equal(z[0], 0);
    assert.equal(z[1], 1);
    const m = toInputTensor(greys, 1, 4, 'minusOneOne', 1).dataSync();
    assert.equal(m[0], -1);
    assert.equal(m[1], 1);
  });

  it('refuses models that do not take 1 or 3 channels', () => throwsWith(() => toInputTensor(small, 2, 3, 'raw', 4), 'bad-input', /expects 4 input channels/));

  it('resizes bilinearly with half-pixel centres', () => {
    const two: DecodedImage = { width: 2, height: 1, data: Uint8Array.from([0, 0, 0, 255, 255, 255]) };
    const t = toInputTensor(two, 1, 4, 'raw');
    const got = Array.from(t.dataSync()).filter((_, i) => i % 3 === 0);
    [0, 63.75, 191.25, 255].forEach((v, i) => assert.ok(Math.abs(got[i] - v) < 1e-4, `x=${i}: ${got[i]} vs ${v}`));
    t.dispose();
  });

  it('area-averages large downscales (every pixel counts)', async () => {
    const d = await readImageFile(img('rgb.png'));
    const r = resizeImage(d, 6, 10); // exactly 2x: pure 2x2 means
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 10; x++) {
        const want = [0, 1, 2].map((c) => Math.round((pixel(d, 2 * x, 2 * y)[c] + pixel(d, 2 * x + 1, 2 * y)[c] + pixel(d, 2 * x, 2 * y + 1)[c] + pixel(d, 2 * x + 1, 2 * y + 1)[c]) / 4));
        pixel(r, x, y).forEach((v, c) => assert.ok(Math.abs(v - want[c]) <= 1, `pixel ${x},${y} channel ${c}: ${v} vs ${want[c]}`));
      }
    }
  });
});
