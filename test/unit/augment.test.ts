import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { toInputTensor } from '../../src/engine/image';
import { Rng } from '../../src/engine/random';
import { augmentBatch, augmentRng, identityPixelMap, pixelMapOf, previewAugmentations } from '../../src/engine/train/augment';
import { augmentSchema, type AugmentSettings } from '../../src/protocol/recipe';
import { setup } from './helpers';

const off: AugmentSettings = augmentSchema.parse({ flip: { enabled: false } });
const only = (patch: Partial<AugmentSettings>): AugmentSettings => ({ ...off, ...patch });
const all = augmentSchema.parse({
  flip: { enabled: true },
  rotate: { enabled: true, degrees: 20 },
  zoom: { enabled: true, amount: 0.2 },
  brightness: { enabled: true, amount: 0.2 },
  contrast: { enabled: true, amount: 0.3 },
});

/** A batch of n distinct, asymmetric images in [0, 1]. */
function batch(n = 6, h = 12, w = 10): tf.Tensor4D {
  const rng = new Rng(99);
  return tf.tensor4d(Float32Array.from({ length: n * h * w * 3 }, () => rng.next()), [n, h, w, 3]);
}

function values(t: tf.Tensor): Float32Array {
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

const zeroOne = () => pixelMapOf('zeroOne');

describe('augmentations', () => {
  before(setup);

  it('are deterministic for a seed and epoch, and differ across epochs and seeds', () => {
    const xs = batch();
    const run = (seed: number, epoch: number) => values(augmentBatch(xs, all, augmentRng(seed, epoch), zeroOne()));
    assert.deepEqual(run(7, 0), run(7, 0));
    assert.notDeepEqual(run(7, 0), run(7, 1));
    assert.notDeepEqual(run(7, 0), run(8, 0));
    xs.dispose();
  });

  it('each one, alone, changes pixels and keeps the shape', () => {
    const xs = batch();
    const original = xs.dataSync();
    for (const [name, settings] of Object.entries({
      flip: only({ flip: { enabled: true } }),
      rotate: only({ rotate: { enabled: true, degrees: 30 } }),
      zoom: only({ zoom: { enabled: true, amount: 0.3 } }),
      brightness: only({ brightness: { enabled: true, amount: 0.3 } }),
      contrast: only({ contrast: { enabled: true, amount: 0.5 } }),
    })) {
      const out = augmentBatch(xs, settings, new Rng(1), zeroOne());
      assert.deepEqual(out.shape, xs.shape, name);
      const v = values(out);
      const changed = v.reduce((n, x, i) => n + (Math.abs(x - original[i]) > 1e-4 ? 1 : 0), 0);
      assert.ok(changed > v.length / 10, `${name} changed only ${changed} of ${v.length} values`);
    }
    xs.dispose();
  });

  it('with everything off, returns the batch unchanged (a new tensor)', () => {
    const xs = batch();
    const out = augmentBatch(xs, off, new Rng(1), zeroOne());
    assert.notEqual(out, xs);
    assert.deepEqual(values(out), xs.dataSync());
    xs.dispose();
  });

  it('flips exactly: each image is either itself or its mirror, and both occur', () => {
    const xs = batch(16);
    const out = augmentBatch(xs, only({ flip: { enabled: true } }), new Rng(3), zeroOne());
    const mirrored = tf.image.flipLeftRight(xs);
    let flips = 0;
    for (let i = 0; i < 16; i++) {
      const o = values(tf.slice(out, [i], [1]));
      const same = o.every((v, k) => v === xs.dataSync()[i * o.length + k]);
      const flip = o.every((v, k) => v === mirrored.dataSync()[i * o.length + k]);
      assert.ok(same || flip, `image ${i} is neither itself nor its mirror`);
      if (flip) flips++;
    }
    assert.ok(flips > 0 && flips < 16, `${flips} of 16 flipped`);
    tf.dispose([xs, out, mirrored]);
  });

  it('keeps brightness and contrast inside the normalised range of 0-255 pixels', () => {
    for (const norm of ['zeroOne', 'minusOneOne', 'imagenet', 'raw'] as const) {
      const map = pixelMapOf(norm);
      const xs = tf.tidy(() => tf.add(tf.mul(tf.mul(batch(), 255), tf.tensor1d(map.scale)), tf.tensor1d(map.offset)) as tf.Tensor4D);
      const strong = only({ brightness: { enabled: true, amount: 1 }, contrast: { enabled: true, amount: 1 } });
      const out = augmentBatch(xs, strong, new Rng(5), map);
      const v = values(out);
      for (let i = 0; i < v.length; i++) {
        const c = i % 3;
        const lo = map.offset[c];
        const hi = map.offset[c] + 255 * map.scale[c];
        assert.ok(v[i] >= lo - 1e-5 && v[i] <= hi + 1e-5, `${norm}: ${v[i]} outside [${lo}, ${hi}]`);
      }
      xs.dispose();
    }
  });

  it('adds brightness in pixel units whatever the normalisation', () => {
    // The same draw on the same picture, in two normalisations, must be the same picture.
    const img = { width: 4, height: 4, data: Uint8Array.from({ length: 48 }, (_, i) => 60 + ((i * 7) % 120)) };
    const bright = only({ brightness: { enabled: true, amount: 0.3 } });
    const asPixels = (norm: 'zeroOne' | 'imagenet') => {
      const map = pixelMapOf(norm);
      const x = tf.expandDims(toInputTensor(img, 4, 4, norm), 0) as tf.Tensor4D;
      const out = augmentBatch(x, bright, new Rng(11), map);
      x.dispose();
      return Array.from(values(out), (v, i) => (v - map.offset[i % 3]) / map.scale[i % 3]);
    };
    const a = asPixels('zeroOne');
    const b = asPixels('imagenet');
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-3, `${v} vs ${b[i]}`));
  });

  it('measures the normalisation from toInputTensor', () => {
    assert.deepEqual(pixelMapOf('raw'), identityPixelMap(3));
    const m = pixelMapOf('minusOneOne');
    m.scale.forEach((s) => assert.ok(Math.abs(s - 1 / 127.5) < 1e-7));
    m.offset.forEach((o) => assert.equal(o, -1));
    const g = pixelMapOf('zeroOne', 1);
    assert.equal(g.scale.length, 1);
  });

  it('previews n augmented RGB images, repeatably', () => {
    const img = { width: 9, height: 7, data: Uint8Array.from({ length: 9 * 7 * 3 }, (_, i) => (i * 37) % 256) };
    const before = tf.memory().numTensors;
    const a = previewAugmentations(img, all, 4, 1);
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
    assert.equal(a.length, 4);
    for (const p of a) {
      assert.equal(p.width, 9);
      assert.equal(p.height, 7);
      assert.ok(p.data instanceof Uint8Array && p.data.length === 9 * 7 * 3);
    }
    assert.deepEqual(previewAugmentations(img, all, 4, 1), a);
    assert.notDeepEqual(a[0].data, a[1].data);
    assert.notDeepEqual(a[0].data, img.data);
  });
});
