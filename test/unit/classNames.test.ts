/**
 * Class folders matched to a model's labels the way people name them: the
 * field test's Teachable Machine export labels "Class 0"…"Class 9" and its
 * author's folders class_0…class_9 (a new head was trained and evaluate
 * refused the dataset); labels typed with a trailing space ("Healthy ").
 * Exact names win; a loose match (case, spaces, _ and -) is used only when it
 * is unambiguous, and is said.
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { looseKey, matchClasses } from '../../src/engine/train/classNames';
import { evaluateModel } from '../../src/engine/train/evaluate';
import { finetune } from '../../src/engine/train/finetune';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { formatStartLines, type TrainStart } from '../../src/protocol/train';
import { makeStripesDataset, seedWeights } from '../fixtures/models';
import { setup } from './helpers';

describe('matching class folders to labels', () => {
  it('matches exactly first, then ignoring case, spaces, _ and -', () => {
    assert.deepEqual(matchClasses(['class_0', 'class_1'], ['Class 1', 'Class 0']), { map: [1, 0], loose: ['class_0 → "Class 0"', 'class_1 → "Class 1"'] });
    assert.deepEqual(matchClasses(['Healthy', 'rust'], ['rust', 'Healthy ']).map, [1, 0]);
    assert.deepEqual(matchClasses(['cat', 'Cat'], ['Cat', 'cat']), { map: [1, 0], loose: [] });
    assert.equal(looseKey(' Early--Blight_ '), 'early blight');
  });

  it('leaves ambiguous and unknown names unmatched rather than guess', () => {
    // Two folders with one key: neither is paired with the label.
    assert.deepEqual(matchClasses(['a_b', 'a-b'], ['A B', 'c']).map, [-1, -1]);
    // Two labels with one key.
    assert.deepEqual(matchClasses(['a b'], ['A_B', 'a-b']).map, [-1]);
    // A label already taken exactly is not taken again loosely.
    assert.deepEqual(matchClasses(['Dog', 'dog_'], ['Dog', 'x']).map, [0, -1]);
    assert.deepEqual(matchClasses(['dogs'], ['dog']).map, [-1]);
  });
});

describe("a model's labels named differently from the dataset's folders", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-classnames-'));
  // The stripes classes are checker, horizontal, vertical; the labels name them otherwise, in another order.
  const labels = ['Vertical ', 'CHECKER', 'horizontal_'];
  let modelJson = '';
  let dataset = '';
  before(async () => {
    await setup();
    dataset = makeStripesDataset(path.join(tmp, 'stripes'), { perClass: 8 });
    const m = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 4, kernelSize: 3, activation: 'relu', name: 'conv' }),
        tf.layers.globalAveragePooling2d({ name: 'gap' }),
        tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }),
      ],
    });
    seedWeights(m, 5);
    const dir = path.join(tmp, 'model');
    fs.mkdirSync(dir, { recursive: true });
    await writeArtifacts(dir, await modelArtifacts(m), { extraFiles: { 'metadata.json': JSON.stringify({ labels }) } });
    m.dispose();
    modelJson = path.join(dir, 'model.json');
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('evaluate scores each image against the label its folder names, and says the folders were matched loosely', async () => {
    const r = await evaluateModel({ modelJsonPath: modelJson, datasetDir: dataset, split: 'all' });
    assert.deepEqual(r.evaluation.classes, labels);
    assert.equal(r.evaluation.images.length, 24);
    for (const im of r.evaluation.images) assert.equal(looseKey(labels[im.label]), path.basename(path.dirname(im.path)));
    assert.match(r.matched!, /checker → "CHECKER", horizontal → "horizontal_", vertical → "Vertical "/);
  });

  it('a fine-tune keeps the head (its labels are the classes) and trains each image toward its own label', async () => {
    let start: TrainStart | undefined;
    const r = await finetune({
      modelJsonPath: modelJson,
      datasetDir: dataset,
      settings: { epochs: 1, batchSize: 8 },
      frozen: [],
      onProgress: (p) => {
        if (p.type === 'start') start = p;
      },
    });
    assert.equal(start!.head.replaced, false);
    assert.match(formatStartLines(start!).join('\n'), /Head: kept .*folders matched ignoring case/);
    const saved = JSON.parse(fs.readFileSync(path.join(r.outputPath, 'metadata.json'), 'utf8')) as { labels: string[] };
    assert.deepEqual(saved.labels, labels);
    // Each validation image was scored against its own folder's label.
    const e = await evaluateModel({ modelJsonPath: path.join(r.outputPath, 'model.json'), datasetDir: dataset });
    for (const im of e.evaluation.images) assert.equal(looseKey(labels[im.label]), path.basename(path.dirname(im.path)));
  });
});
