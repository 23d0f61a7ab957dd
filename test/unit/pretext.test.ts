import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../../src/engine/model';
import { finetune } from '../../src/engine/train/finetune';
import { pretrainRotation, rotate90, rotationBatch } from '../../src/engine/train/pretext';
import { rotationLabels } from '../../src/protocol/pretext';
import type { TrainProgress, TrainStart } from '../../src/protocol/train';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-pretext-'));
const at = (...p: string[]) => path.join(tmp, ...p);

before(setup);
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** numpy's rot90 by hand: k counter-clockwise quarter turns of an s x s image of [r, g] pixels. */
function rot90Reference(img: number[][][], k: number): number[][][] {
  let out = img;
  for (let t = 0; t < k; t++) {
    const s = out.length;
    // new[i][j] = old[j][s - 1 - i]
    out = Array.from({ length: s }, (_, i) => Array.from({ length: s }, (_, j) => out[j][s - 1 - i]));
  }
  return out;
}

describe('rotation pretext task', () => {
  it('turns images exactly, counter-clockwise, and labels each turn by its quarter count', () => {
    // An asymmetric 3x3 image with 2 channels: every pixel is distinct.
    const s = 3;
    const img = Array.from({ length: s }, (_, y) => Array.from({ length: s }, (_, x) => [y * s + x, 100 + y * s + x]));
    const xs = tf.tensor4d(img.flat(2), [1, s, s, 2]);
    for (let k = 0; k < 4; k++) {
      const r = rotate90(xs as tf.Tensor4D, k);
      assert.deepEqual(r.arraySync()[0], rot90Reference(img, k), `turn ${k}`);
      r.dispose();
    }
    // 90 degrees counter-clockwise: the top-right pixel goes to the top-left.
    const q = rotate90(xs as tf.Tensor4D, 1);
    assert.equal((q.arraySync() as number[][][][])[0][0][0][0], img[0][s - 1][0]);
    q.dispose();
    const two = tf.concat([xs, tf.add(xs, 1000)]) as tf.Tensor4D;
    const b = rotationBatch(two);
    assert.deepEqual(b.labels, [0, 0, 1, 1, 2, 2, 3, 3]);
    assert.deepEqual(b.xs.shape, [8, s, s, 2]);
    const ys = b.ys.arraySync();
    b.labels.forEach((l, i) => assert.deepEqual(ys[i], [0, 1, 2, 3].map((c) => (c === l ? 1 : 0))));
    const all = b.xs.arraySync();
    for (let k = 0; k < 4; k++) {
      assert.deepEqual(all[2 * k], rot90Reference(img, k));
      assert.deepEqual(all[2 * k + 1], rot90Reference(img.map((row) => row.map((p) => p.map((v) => v + 1000))), k));
    }
    tf.dispose([xs, two, b.xs, b.ys]);
  });

  it('pretrains the backbone on unlabelled images, saves it next to the model, and the result fine-tunes', async () => {
    const dir = at('model', 'tiny-cnn');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    const images = makeStripesDataset(at('unlabelled'), { perClass: 3, jpegEvery: 0 });
    const progress: TrainProgress[] = [];
    const before = tf.memory().numTensors;
    const result = await pretrainRotation({
      modelJsonPath: path.join(dir, 'model.json'),
      imagesDir: images,
      settings: { epochs: 1, batchSize: 4 },
      onProgress: (p) => progress.push(p),
      now: () => new Date(2026, 0, 2, 3, 4),
    });
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
    assert.equal(result.outputPath, at('model', 'tiny-cnn-rotation-pretrained-20260102-0304'));
    assert.equal(result.cutLayer, 'gap');
    assert.equal(result.images, 9);
    const start = progress.find((p): p is TrainStart => p.type === 'start');
    assert.ok(start);
    assert.equal(start.trainSize, 36, '9 images x 4 rotations');
    assert.deepEqual(start.classes.map((c) => c.name), rotationLabels);
    assert.ok(progress.some((p) => p.type === 'epoch'));
    assert.equal(progress[progress.length - 1].type, 'end');
    const meta = JSON.parse(fs.readFileSync(path.join(result.outputPath, 'metadata.json'), 'utf8')) as { labels: string[]; pretext: { task: string; cutLayer: string } };
    assert.deepEqual(meta.labels, rotationLabels);
    assert.equal(meta.pretext.cutLayer, 'gap');
    const reloaded = await loadModel(path.join(result.outputPath, 'model.json'));
    assert.deepEqual(reloaded.summary.outputShape, [null, 4]);
    reloaded.layers?.dispose();
    // Later fine-tuning replaces the rotation head with one for the classes.
    const labelled = makeStripesDataset(at('labelled'), { perClass: 3, jpegEvery: 0 });
    const ft = await finetune({ modelJsonPath: path.join(result.outputPath, 'model.json'), datasetDir: labelled, settings: { epochs: 1, augment: { flip: { enabled: false } } }, frozen: ['conv1', 'bn1', 'pool1', 'conv2', 'gap'], onProgress: () => undefined });
    assert.equal(ft.embeddingCache, true);
    assert.deepEqual(ft.labels, ['checker', 'horizontal', 'vertical']);
  });

  it('refuses a non-square model input', async () => {
    const m = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [8, 12, 3], filters: 2, kernelSize: 3, name: 'c' }), tf.layers.globalAveragePooling2d({ name: 'g' }), tf.layers.dense({ units: 2, activation: 'softmax', name: 'd' })] });
    const dir = at('wide');
    await m.save(tf.io.withSaveHandler(async (a) => {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }));
      fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.from(a.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    m.dispose();
    await assert.rejects(pretrainRotation({ modelJsonPath: path.join(dir, 'model.json'), imagesDir: at('unlabelled'), onProgress: () => undefined }), /needs a square input/);
  });
});
