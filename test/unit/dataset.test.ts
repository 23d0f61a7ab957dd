import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { ImageSource, InputCache, epochOrder, scanDataset, splitDataset } from '../../src/engine/train/dataset';
import type { SkippedFile } from '../../src/protocol/train';
import { makeStripesDataset, rawPng, stripesClasses } from '../fixtures/models';
import { rejectsWith, setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-dataset-'));
const at = (...p: string[]) => path.join(tmp, ...p);

/** A small valid PNG of one colour. */
function png(size = 8, rgb: [number, number, number] = [200, 40, 40]): Buffer {
  return rawPng(size, size, 8, 2, Array.from({ length: size }, () => Buffer.from(Array.from({ length: size }, () => rgb).flat())));
}

/**
 * A PNG whose chunk list and header are whole (so the scan's container check
 * passes) but whose pixels do not decode: 25-byte scanlines where the
 * header's 8-bit RGB asks for 24, so the decoder meets a pixel byte (40)
 * where the second row's filter byte belongs. (Garbled zlib data would do
 * too, but pngjs then reads uninitialised memory and the outcome varies from
 * run to run; a bit depth the colour type does not allow is refused at the
 * scan.)
 */
function undecodablePng(): Buffer {
  const row = Buffer.from([...Array.from({ length: 8 }, () => [200, 40, 40]).flat(), 40]);
  return rawPng(8, 8, 8, 2, Array.from({ length: 8 }, () => row));
}

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('dataset scan', () => {
  before(setup);

  it('finds the classes (sorted), their images (PNG and JPEG) and nothing else', async () => {
    const dir = makeStripesDataset(at('stripes'), { perClass: 10 });
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, stripesClasses);
    assert.deepEqual(scan.counts, [10, 10, 10]);
    assert.equal(scan.images.length, 30);
    assert.ok(scan.images.some((i) => i.rel.endsWith('.jpg')) && scan.images.some((i) => i.rel.endsWith('.png')));
    assert.deepEqual(scan.skipped, []);
    assert.ok(scan.images.every((i) => path.isAbsolute(i.file) && i.rel.startsWith(scan.classes[i.label] + '/')));
  });

  it('accepts unicode and spaces in class names, NFC-normalised', async () => {
    const dir = at('unicode');
    const names = ['chats noirs', 'cafe\u0301 crème', '🐶 dogs'];
    for (const n of names) {
      fs.mkdirSync(path.join(dir, n), { recursive: true });
      fs.writeFileSync(path.join(dir, n, 'une image.png'), png());
    }
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['café crème', 'chats noirs', '🐶 dogs']);
    assert.equal(scan.classes[0], 'café crème'.normalize('NFC'));
    assert.deepEqual(scan.counts, [1, 1, 1]);
  });

  it('skips and reports other files, corrupt images and broken links; ignores hidden files', async () => {
    const dir = at('messy');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c, 'nested'), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'good.png'), png());
      fs.writeFileSync(path.join(dir, c, 'nested', 'deep.png'), png());
    }
    fs.writeFileSync(path.join(dir, 'a', 'notes.txt'), 'not an image');
    fs.writeFileSync(path.join(dir, 'a', '.DS_Store'), 'hidden');
    fs.mkdirSync(path.join(dir, '.git'));
    fs.writeFileSync(path.join(dir, 'a', 'truncated.png'), png().subarray(0, 40));
    fs.writeFileSync(path.join(dir, 'a', 'text.jpg'), 'hello, I am text');
    // A PNG without an image extension is still an image (magic bytes decide).
    fs.writeFileSync(path.join(dir, 'b', 'no-extension'), png());
    fs.symlinkSync(path.join(dir, 'gone.png'), path.join(dir, 'b', 'dangling.png'));
    fs.writeFileSync(path.join(dir, 'loose.png'), png());
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['a', 'b']);
    assert.deepEqual(scan.counts, [2, 3]);
    const by = (file: string) => scan.skipped.find((s) => s.file === file);
    assert.equal(by('a/notes.txt')?.reason, 'not-an-image');
    assert.equal(by('a/truncated.png')?.reason, 'corrupt');
    assert.match(by('a/truncated.png')?.detail ?? '', /truncated/);
    assert.equal(by('a/text.jpg')?.reason, 'corrupt');
    assert.match(by('a/text.jpg')?.detail ?? '', /not a PNG or JPEG/);
    assert.equal(by('b/dangling.png')?.reason, 'unreadable');
    assert.equal(by('loose.png')?.reason, 'outside-class');
    assert.equal(by('a/.DS_Store'), undefined);
    assert.equal(scan.skipped.length, 5);
  });

  it('reports files it may not read, and goes on', async (t) => {
    if (process.getuid?.() === 0) {
      t.skip('root reads every file; permissions cannot be tested');
      return;
    }
    const dir = at('perm');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'ok.png'), png());
    }
    fs.writeFileSync(path.join(dir, 'a', 'secret.png'), png());
    fs.chmodSync(path.join(dir, 'a', 'secret.png'), 0);
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.skipped.map((s) => [s.file, s.reason, s.detail]), [['a/secret.png', 'unreadable', 'cannot be read (permission denied)']]);
  });

  it('refuses a missing folder, a single class, and empty class folders, naming them', async () => {
    await rejectsWith(scanDataset(at('nope')), 'not-found', /dataset folder .*nope does not exist/);
    const one = at('one');
    fs.mkdirSync(path.join(one, 'cats'), { recursive: true });
    fs.writeFileSync(path.join(one, 'cats', 'x.png'), png());
    await rejectsWith(scanDataset(one), 'bad-dataset', /needs at least 2 class folders; found 1: cats/);
    const none = at('none');
    fs.mkdirSync(none);
    fs.writeFileSync(path.join(none, 'x.png'), png());
    await rejectsWith(scanDataset(none), 'bad-dataset', /found none \(1 image lie/);
    const empty = at('empty');
    for (const c of ['cats', 'dogs', 'birds']) fs.mkdirSync(path.join(empty, c), { recursive: true });
    fs.writeFileSync(path.join(empty, 'cats', 'x.png'), png());
    fs.writeFileSync(path.join(empty, 'birds', 'broken.png'), png().subarray(0, 30));
    await rejectsWith(scanDataset(empty), 'bad-dataset', /class folders "birds", "dogs" in .* have no usable PNG or JPEG images \(birds: 1 file left out: birds\/broken\.png is truncated.*dogs: it is empty\)/);
  });
});

describe('dataset split', () => {
  const images = (counts: number[]) => counts.flatMap((n, label) => Array.from({ length: n }, (_, i) => ({ file: `/d/${label}/${i}.png`, rel: `${label}/${String(i).padStart(3, '0')}.png`, label })));
  const classes = ['a', 'b', 'c', 'd'];

  it('splits each class by round(fraction * n), at least one, keeping one for training', () => {
    const s = splitDataset({ classes, images: images([10, 3, 2, 1]) }, 0.2, 7);
    assert.deepEqual(s.perClass, [
      { train: 8, val: 2 },
      { train: 2, val: 1 },
      { train: 1, val: 1 },
      { train: 1, val: 0 },
    ]);
    assert.equal(s.train.length + s.val.length, 16);
    const all = new Set([...s.train, ...s.val].map((i) => i.file));
    assert.equal(all.size, 16, 'disjoint and complete');
    assert.deepEqual(splitDataset({ classes, images: images([10, 3, 2, 1]) }, 0, 7).val, []);
  });

  it('is seeded: the same seed gives the same split, another seed another one', () => {
    const data = { classes, images: images([40, 40, 40, 40]) };
    const a = splitDataset(data, 0.25, 7).val.map((i) => i.file);
    const b = splitDataset(data, 0.25, 7).val.map((i) => i.file);
    const c = splitDataset(data, 0.25, 8).val.map((i) => i.file);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    // Not tfjs's validationSplit: not the last rows, and from every class.
    for (let label = 0; label < 4; label++) assert.equal(a.filter((f) => f.startsWith(`/d/${label}/`)).length, 10);
    assert.notDeepEqual(a.filter((f) => f.startsWith('/d/0/')), Array.from({ length: 10 }, (_, i) => `/d/0/${30 + i}.png`));
  });

  it("does not move one class's split when another class changes", () => {
    const a = splitDataset({ classes, images: images([20, 20, 20, 20]) }, 0.2, 3).val.filter((i) => i.label === 0);
    const b = splitDataset({ classes, images: images([20, 35, 5, 20]) }, 0.2, 3).val.filter((i) => i.label === 0);
    assert.deepEqual(a, b);
  });

  it('shuffles each epoch differently and repeatably', () => {
    const e0 = epochOrder(50, 7, 0);
    assert.deepEqual([...e0].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(e0, epochOrder(50, 7, 0));
    assert.notDeepEqual(e0, epochOrder(50, 7, 1));
    assert.notDeepEqual(e0, epochOrder(50, 8, 0));
  });
});

describe('dataset batches', () => {
  before(setup);

  it('decodes lazily into normalised, resized, one-hot batches', async () => {
    const dir = makeStripesDataset(at('batches'), { perClass: 5, size: 20 });
    const scan = await scanDataset(dir);
    const src = new ImageSource(scan.images, { height: 10, width: 10, channels: 3, normalization: 'minusOneOne', classCount: 3 });
    const order = Array.from({ length: 15 }, (_, i) => i);
    const sizes: number[] = [];
    for await (const b of src.batches(order, 4)) {
      assert.deepEqual(b.xs.shape.slice(1), [10, 10, 3]);
      const values = b.xs.dataSync();
      const [min, max] = [Math.min(...values), Math.max(...values)];
      assert.ok(min >= -1 && max <= 1 && max > min);
      const labels = tf.tidy(() => Array.from(tf.argMax(b.ys, -1).dataSync()));
      assert.deepEqual(labels, b.indices.map((i) => scan.images[i].label));
      sizes.push(b.size);
      b.xs.dispose();
      b.ys.dispose();
    }
    assert.deepEqual(sizes, [4, 4, 4, 3]);
  });

  it('leaves out an image that fails to decode, once, with a warning, and goes on', async () => {
    const dir = at('undecodable');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(dir, c, `${i}.png`), png());
    }
    fs.writeFileSync(path.join(dir, 'a', 'bad.png'), undecodablePng());
    const scan = await scanDataset(dir);
    assert.equal(scan.images.length, 7, 'the container check passes');
    const warned: SkippedFile[] = [];
    const cache = new InputCache(1 << 20);
    const src = new ImageSource(scan.images, { height: 8, width: 8, channels: 3, normalization: 'zeroOne', classCount: 2, cache, onBadImage: (s) => warned.push(s) });
    const all = Array.from({ length: 7 }, (_, i) => i);
    for (let epoch = 0; epoch < 2; epoch++) {
      let seen = 0;
      for await (const b of src.batches(all, 8)) {
        seen += b.size;
        b.xs.dispose();
        b.ys.dispose();
      }
      assert.equal(seen, 6);
    }
    assert.equal(warned.length, 1);
    assert.equal(warned[0].file, 'a/bad.png');
    assert.equal(warned[0].reason, 'corrupt');
    assert.match(warned[0].detail, /could not be decoded as PNG/);
    assert.equal(cache.bytes, 6 * 8 * 8 * 3 * 4, 'decoded inputs kept for the next epoch');
  });

  it('stops when cancelled and frees the batch it had read ahead', async () => {
    const dir = makeStripesDataset(at('cancel'), { perClass: 4 });
    const scan = await scanDataset(dir);
    const src = new ImageSource(scan.images, { height: 8, width: 8, channels: 3, normalization: 'zeroOne', classCount: 3 });
    const ac = new AbortController();
    const before = tf.memory().numTensors;
    await rejectsWith(
      (async () => {
        for await (const b of src.batches(Array.from({ length: 12 }, (_, i) => i), 2, ac.signal)) {
          b.xs.dispose();
          b.ys.dispose();
          ac.abort();
        }
      })(),
      'cancelled',
      /cancelled/,
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(tf.memory().numTensors, before);
  });
});
