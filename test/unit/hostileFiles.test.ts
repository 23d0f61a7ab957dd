/**
 * Hostile Keras files, images and datasets, each with the exact message the
 * user sees (see hostile.test.ts for model files and the command line).
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { decodeImage, readImageFile } from '../../src/engine/image';
import { disposeModel, loadModel } from '../../src/engine/model';
import { scanDataset, splitDataset } from '../../src/engine/train/dataset';
import { kerasFuzzSpecs } from '../fixtures/fuzzKeras';
import { gray8Pixel, grayAlphaPixel, makeHostileImages, manyClassesDataset, rgb16Pixel, rgbaPixel, solidPng, type HostileImageName } from '../fixtures/hostile';
import { hostileKerasNames, makeHostileKeras, type HostileKerasName } from '../fixtures/hostileKeras';
import { kerasWeights, writeKerasH5 } from '../fixtures/keras';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';
import { root, refuses, refusesSync, memory, assertNoJump, hangLimit } from './hostileHelpers';

const kerasRefusals: { name: HostileKerasName; code: string; message: (file: string) => string }[] = [
  {
    // libhdf5's error stack used to leak through as "Internal error in the compute worker: HDF5-DIAG: Error detected in HDF5 (2.0.0): ..." (many lines).
    name: 'h5-damaged-header',
    code: 'keras-file',
    message: (f) =>
      `${f} is damaged: reading "model_weights/conv" failed (bad object header version number). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-damaged-header.h5 out/" and open out/model.json.`,
  },
  {
    // Was a hang of the compute worker (libhdf5 never returned), ended only by the load time limit, losing every loaded model.
    name: 'h5-heap-loop',
    code: 'keras-file',
    message: (f) =>
      `${f} is damaged: reading the attribute "model_config" of the root group failed (libhdf5 was still reading after 5 s; its structures may point round in a loop). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-heap-loop.h5 out/" and open out/model.json.`,
  },
  {
    // Soft links are not followed (Keras never writes them): one pointing at an ancestor made the reader walk an endless tree.
    name: 'h5-link-loop',
    code: 'bad-weights',
    message: (f) => `${f}: weight "d1/kernel:0" of layer "d1" is listed in the file but its data is missing (no dataset model_weights/d1/d1/kernel:0).`,
  },
  {
    // The link is not followed: h5wasm sees only its own in-memory copy of the file, never /etc/passwd.
    name: 'h5-external-link',
    code: 'bad-weights',
    message: (f) => `${f}: weight "d1/kernel:0" of layer "d1" is listed in the file but its data is missing (no dataset model_weights/d1/d1/kernel:0).`,
  },
  {
    // Was a hang: tfjs re-queued the call for ever, and only the load time limit ended it (restarting the worker).
    name: 'keras-call-never-made',
    code: 'not-a-model',
    message: (f) =>
      `${f}: the model's graph cannot be rebuilt: layer "cat" takes its input from call 100000 of layer "add", which is called only 1 time. Its layer list is damaged; save the model again from Keras.`,
  },
  {
    // A size that is no whole number printed as NaN ("a weight of shape [NaN, 4] (NaN values)").
    name: 'keras-units-a-list',
    code: 'not-a-model',
    message: (f) => `${f}: layer "d1" asks for a weight of shape [27, [4]], which is not a shape; its config is damaged. Save the model again from Keras.`,
  },
  {
    // Printed tfjs's "Cannot read properties of undefined (reading 'forEach')".
    name: 'h5-config-missing-field',
    code: 'not-a-model',
    message: (f) =>
      `${f}: tfjs could not build the Keras model from its config (the config is malformed: a field tfjs needs is missing or has the wrong type). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-config-missing-field.h5 out/" and open out/model.json.`,
  },
  {
    // Printed the control characters raw, and left one tensor (the weight's initial value) in the worker on every try.
    name: 'h5-layer-name-control-chars',
    code: 'not-a-model',
    message: (f) =>
      `${f}: tfjs could not build the Keras model from its config (Not a valid tensor name: 'd1 \\u0000\\u001b[31m/kernel'). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-layer-name-control-chars.h5 out/" and open out/model.json.`,
  },
  {
    // Was allowed: the build budget trusted dataset shapes, and a chunked dataset never written claims 2^40 values in a few bytes.
    name: 'h5-unwritten-dataset-bomb',
    code: 'bad-weights',
    message: (f) =>
      `${f}: layer "d1" asks for a weight of shape [27, 50000000] (1350000000 values), far more than the ${fs.statSync(f).size} weight values the file holds; the config does not match its weights (refused before allocating).`,
  },
];

describe('hostile Keras files (.h5 and .keras)', () => {
  let k: Record<HostileKerasName, string>;
  before(async () => {
    await setup();
    k = await makeHostileKeras(path.join(root, 'keras'));
  });

  it('covers every hostile Keras file the generator makes', () => {
    const loads = ['keras-initializer-constructor', 'keras-layer-called-twice'];
    assert.deepEqual(hostileKerasNames.filter((n) => !kerasRefusals.some((r) => r.name === n) && !loads.includes(n)), []);
  });

  it('keras-initializer-constructor: loads, and warns that the initializer "constructor" was left out (it crashed with "text.slice is not a function")', async () => {
    const loaded = await loadModel(k['keras-initializer-constructor']);
    try {
      assert.deepEqual(loaded.summary.warnings, ['layer "d1": the initializer constructor does not exist in tfjs and was left out (it only matters for training new weights)']);
    } finally {
      disposeModel(loaded);
    }
  });

  it('keras-layer-called-twice: loads, and unloading frees every weight (two tensors were left per load)', async () => {
    const before = tf.memory().numTensors;
    const loaded = await loadModel(k['keras-layer-called-twice']);
    disposeModel(loaded);
    assert.equal(tf.memory().numTensors, before);
  });

  for (const r of kerasRefusals) {
    it(`${r.name}: refused with one clear message`, { timeout: hangLimit }, async () => {
      await refuses(loadModel(k[r.name]), r.code, r.message(k[r.name]));
    });
  }

  it('no failed Keras load leaves a tensor behind', { timeout: hangLimit }, async () => {
    const before = tf.memory().numTensors;
    // (Not the heap loop again: it only costs its 5 s, and is loaded again below.)
    for (const r of kerasRefusals.filter((r) => r.name !== 'h5-heap-loop')) await loadModel(k[r.name]).catch(() => undefined);
    assert.equal(tf.memory().numTensors, before);
  });

  it('after libhdf5 was stopped in a loop, the next Keras file loads (a fresh HDF5 reader)', { timeout: hangLimit }, async () => {
    await assert.rejects(loadModel(k['h5-heap-loop']));
    const good = path.join(root, 'keras', 'good.h5');
    await writeKerasH5(good, kerasFuzzSpecs.cnn, kerasWeights(kerasFuzzSpecs.cnn, 7));
    const loaded = await loadModel(good);
    try {
      assert.equal(loaded.summary.totalParams, 191);
    } finally {
      disposeModel(loaded);
    }
  });
});

// ---------------------------------------------------------------------------

describe('hostile images', () => {
  let img: Record<HostileImageName, string>;
  before(async () => {
    await setup();
    img = makeHostileImages(path.join(root, 'images'));
  });
  const pixels = (d: { data: Uint8Array }) => Array.from(d.data);

  it('0-byte file', () => refuses(readImageFile(img['empty.png']), 'bad-image', `${img['empty.png']} is empty (0 bytes); the copy or download may have failed.`));
  it('truncated PNG', () =>
    refuses(
      readImageFile(img['truncated.png']),
      'bad-image',
      `${img['truncated.png']} is truncated (it ends inside its IDAT chunk); the copy or download was probably interrupted. Copy the image again or re-export it.`,
    ));
  it('truncated JPEG', () =>
    refuses(
      readImageFile(img['truncated.jpg']),
      'bad-image',
      `${img['truncated.jpg']} is truncated (it has no end-of-image marker after its image data); the copy or download was probably interrupted. Copy the image again or re-export it.`,
    ));
  it('PNG decompression bomb: a few hundred bytes claiming 30000x30000, refused before decoding', async () => {
    const before = memory();
    await refuses(
      readImageFile(img['bomb.png']),
      'bad-image',
      `${img['bomb.png']} claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit; refused before decoding (a decompression bomb, or a scan far larger than a model needs). Resize it first.`,
    );
    assertNoJump(before, 'bomb.png');
  });
  it('JPEG decompression bomb', async () => {
    const before = memory();
    await refuses(
      readImageFile(img['bomb.jpg']),
      'bad-image',
      `${img['bomb.jpg']} claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit; refused before decoding (a decompression bomb, or a scan far larger than a model needs). Resize it first.`,
    );
    assertNoJump(before, 'bomb.jpg');
  });
  it('a 1 KB PNG whose header claims 7000x7000 (under the pixel limit) is refused as damaged, not decoded', () => {
    const png = fs.readFileSync(fixture('images', 'rgb.png'));
    const edited = Buffer.from(png);
    edited.writeUInt32BE(7000, 16);
    edited.writeUInt32BE(7000, 20);
    const crc = crc32(edited.subarray(12, 29));
    edited.writeUInt32BE(crc, 29);
    refusesSync(() => decodeImage(edited, 'claims.png'), 'bad-image', `claims.png is damaged: ${idatBytes(png)} bytes of image data cannot hold the 7000x7000 pixels its header claims. Copy the image again or re-export it.`);
  });
  it('text file named .png', () =>
    refuses(readImageFile(img['text.png']), 'bad-image', `${img['text.png']} is not a PNG or JPEG image (it starts with "hello, I am not"); Layer Lens reads PNG and JPEG files.`));
  it('PNG 0 pixels wide', () => refuses(readImageFile(img['zero-width.png']), 'bad-image', `${img['zero-width.png']} claims a size of 0x5 pixels; the file is corrupt.`));
  it('a folder named x.png (unreadable as a file, even for root)', () =>
    refuses(readImageFile(img['folder.png']), 'bad-image', `${img['folder.png']} is not a file; pick a PNG or JPEG image.`));

  it('16-bit RGB PNG: read, each sample scaled to 8 bits by round(v * 255 / 65535)', async () => {
    const d = await readImageFile(img['rgb16.png']);
    const want = [0, 1].flatMap((y) => [0, 1, 2].flatMap((x) => rgb16Pixel(x, y).map((v) => Math.round((v * 255) / 65535))));
    assert.deepEqual([d.width, d.height], [3, 2]);
    assert.deepEqual(pixels(d), want);
  });
  it('8-bit greyscale PNG: read as equal R, G, B', async () => {
    const d = await readImageFile(img['gray8.png']);
    assert.deepEqual(pixels(d), [0, 1].flatMap((y) => [0, 1, 2].flatMap((x) => [gray8Pixel(x, y), gray8Pixel(x, y), gray8Pixel(x, y)])));
  });
  it('greyscale + alpha PNG: composited over black', async () => {
    const d = await readImageFile(img['gray-alpha.png']);
    const row = [0, 1, 2].flatMap((x) => {
      const [g, a] = grayAlphaPixel(x);
      const v = Math.round((g * a) / 255);
      return [v, v, v];
    });
    assert.deepEqual(pixels(d), [...row, ...row]);
  });
  it('RGBA PNG: transparent is black, half-transparent is half, opaque is the colour', async () => {
    const d = await readImageFile(img['rgba.png']);
    assert.deepEqual(pixels(d), [0, 1, 2].flatMap((x) => rgbaPixel(x).slice(0, 3).map((c) => Math.round((c * rgbaPixel(x)[3]) / 255))));
    assert.deepEqual(pixels(d).slice(0, 3), [0, 0, 0]);
    assert.deepEqual(pixels(d).slice(6), [90, 180, 250]);
  });
});

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function idatBytes(png: Buffer): number {
  let n = 0;
  for (let o = 8; o + 8 <= png.length; o += 12 + png.readUInt32BE(o)) if (png.toString('latin1', o + 4, o + 8) === 'IDAT') n += png.readUInt32BE(o);
  return n;
}

// ---------------------------------------------------------------------------

describe('hostile datasets', () => {
  before(setup);
  const ds = (name: string) => path.join(root, 'datasets', name);

  it('empty class folders are named, with why', async () => {
    const dir = ds('empty-classes');
    for (const c of ['cats', 'dogs', 'birds']) fs.mkdirSync(path.join(dir, c), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cats', 'a.png'), solidPng());
    await refuses(
      scanDataset(dir),
      'bad-dataset',
      `class folders "birds", "dogs" in ${dir} have no usable PNG or JPEG images (birds: it is empty; dogs: it is empty). Add images, or remove the folders.`,
    );
  });

  it('one class', async () => {
    const dir = ds('one-class');
    fs.mkdirSync(path.join(dir, 'cats'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cats', 'a.png'), solidPng());
    await refuses(
      scanDataset(dir),
      'bad-dataset',
      `dataset folder ${dir} needs at least 2 class folders; found 1: cats. Put each class's images in its own sub-folder, e.g. ${dir}/cats and ${dir}/dogs.`,
    );
  });

  it('2000 classes of one image each: scanned and split (every image trains, none validates), without a hang', { timeout: hangLimit }, async () => {
    const dir = manyClassesDataset(ds('many-classes'), 2000);
    const scan = await scanDataset(dir);
    assert.equal(scan.classes.length, 2000);
    assert.ok(scan.counts.every((n) => n === 1));
    assert.deepEqual(scan.skipped, []);
    const split = splitDataset(scan, 0.2, 7);
    assert.deepEqual([split.train.length, split.val.length], [2000, 0]);
  });

  it('non-image files and broken images are left out and listed, with the reason', async () => {
    const dir = ds('mixed');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'good.png'), solidPng());
    }
    fs.writeFileSync(path.join(dir, 'a', 'notes.txt'), 'not an image');
    fs.writeFileSync(path.join(dir, 'a', 'model.json'), '{}');
    fs.writeFileSync(path.join(dir, 'a', 'text.png'), 'hello, I am not an image\n');
    fs.copyFileSync(fixture('images', 'truncated.png'), path.join(dir, 'b', 'cut.png'));
    fs.copyFileSync(fixture('images', 'bomb.png'), path.join(dir, 'b', 'bomb.png'));
    fs.writeFileSync(path.join(dir, 'b', 'empty.jpg'), '');
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [1, 1]);
    assert.deepEqual(scan.skipped, [
      { file: 'a/model.json', reason: 'not-an-image', detail: 'is not a PNG or JPEG image' },
      { file: 'a/notes.txt', reason: 'not-an-image', detail: 'is not a PNG or JPEG image' },
      { file: 'a/text.png', reason: 'corrupt', detail: 'is not a PNG or JPEG image (it starts with "hello, I am not")' },
      { file: 'b/bomb.png', reason: 'corrupt', detail: 'claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit' },
      { file: 'b/cut.png', reason: 'corrupt', detail: 'is truncated (it ends inside its IDAT chunk)' },
      { file: 'b/empty.jpg', reason: 'corrupt', detail: 'is empty (0 bytes)' },
    ]);
  });

  it('unreadable entries (as root, chmod 000 does not stop a read, so: a dangling link, a link loop, a FIFO; a folder named x.png is walked as a sub-folder)', async () => {
    const dir = ds('unreadable');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'good.png'), solidPng());
    }
    fs.symlinkSync(path.join(dir, 'gone.png'), path.join(dir, 'a', 'dangling.png'));
    fs.symlinkSync('loop2.png', path.join(dir, 'a', 'loop1.png'));
    fs.symlinkSync('loop1.png', path.join(dir, 'a', 'loop2.png'));
    fs.mkdirSync(path.join(dir, 'b', 'x.png'));
    fs.writeFileSync(path.join(dir, 'b', 'x.png', 'inside.png'), solidPng());
    const fifo = path.join(dir, 'b', 'pipe.png');
    const made = spawnSyncOk('mkfifo', [fifo]);
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [1, 2], 'the folder named x.png is a sub-folder, and its image counts');
    assert.deepEqual(
      scan.skipped,
      [
        { file: 'a/dangling.png', reason: 'unreadable', detail: 'is a broken symbolic link' },
        { file: 'a/loop1.png', reason: 'unreadable', detail: 'is inside a symbolic link loop' },
        { file: 'a/loop2.png', reason: 'unreadable', detail: 'is inside a symbolic link loop' },
        ...(made ? [{ file: 'b/pipe.png', reason: 'not-an-image', detail: 'is not a regular file (a FIFO)' }] : []),
      ],
    );
  });

  it('unicode, spaces and decomposed accents in class and file names', async () => {
    const dir = ds('unicode');
    const names = ['  spaces  around', 'e\u0301te\u0301 (NFD)', '猫', 'עברית \u202e', '🐶 dogs'];
    for (const n of names) {
      fs.mkdirSync(path.join(dir, n), { recursive: true });
      fs.writeFileSync(path.join(dir, n, 'ïmage 1 .png'), solidPng());
    }
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['  spaces  around', 'été (NFD)', 'עברית \u202e', '猫', '🐶 dogs']);
    assert.deepEqual(scan.counts, [1, 1, 1, 1, 1]);
    assert.ok(scan.images.every((im) => fs.existsSync(im.file)));
  });
});

function spawnSyncOk(cmd: string, args: string[]): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('node:child_process').spawnSync(cmd, args).status === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
