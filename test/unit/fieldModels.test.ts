/**
 * The kinds of real-world model the field test found failing (issue 16),
 * each made by the project's own writers: greyscale models without a channel
 * axis, models that scale their own input (Rescaling, Normalization; tfjs,
 * Keras 2 and Keras 3 configs), convolutional classifiers without a final
 * Dense, and models with several outputs. Each loads, inspects as a
 * reference computed by hand says, and fine-tunes (every layer trained,
 * through the compiled step where it plans the model).
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readImageFile, resizeToTensor } from '../../src/engine/image';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { NormalizationLayer } from '../../src/engine/io/normalizationLayer';
import { Inspector } from '../../src/engine/inspect/inspector';
import { disposeModel, loadModel } from '../../src/engine/model';
import { computeEmbeddings } from '../../src/engine/embed/compute';
import { finetune } from '../../src/engine/train/finetune';
import { pretrainRotation } from '../../src/engine/train/pretext';
import { formatStartLines, type TrainProgress, type TrainStart } from '../../src/protocol/train';
import { kerasWeights, writeKerasH5, writeKerasV3, type ModelSpec } from '../fixtures/keras';
import { fixture, makeStripesDataset, seedWeights, stripesClasses } from '../fixtures/models';
import { maxAbsDiff, setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-field-'));
const at = (...p: string[]) => path.join(tmp, ...p);
let dataset = '';

async function save(name: string, m: tf.LayersModel, metadata?: object): Promise<string> {
  const dir = at('models', name);
  fs.mkdirSync(dir, { recursive: true });
  await writeArtifacts(dir, await modelArtifacts(m), metadata ? { extraFiles: { 'metadata.json': JSON.stringify(metadata) } } : {});
  m.dispose();
  return path.join(dir, 'model.json');
}

async function tune(modelJsonPath: string, settings: object = {}): Promise<{ start: TrainStart; progress: TrainProgress[]; outputPath: string }> {
  const progress: TrainProgress[] = [];
  const r = await finetune({
    modelJsonPath,
    datasetDir: dataset,
    settings: { epochs: 2, batchSize: 8, augment: { flip: { enabled: true } }, ...settings },
    frozen: [],
    freeze: 'none',
    onProgress: (p) => progress.push(p),
  });
  const start = progress.find((p): p is TrainStart => p.type === 'start')!;
  for (const p of progress) if (p.type === 'epoch') assert.ok(Number.isFinite(p.metrics.loss), `epoch ${p.metrics.epoch} loss ${p.metrics.loss}`);
  return { start, progress, outputPath: r.outputPath };
}

before(async () => {
  await setup();
  dataset = makeStripesDataset(at('stripes'), { perClass: 8 });
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('greyscale models without a channel axis ([?, h, w])', () => {
  let model = '';
  before(async () => {
    const m = tf.sequential({ name: 'mnist_like' });
    m.add(tf.layers.flatten({ inputShape: [16, 16], name: 'flat' }));
    m.add(tf.layers.dense({ units: 8, activation: 'relu', name: 'hidden' }));
    m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }));
    seedWeights(m, 31);
    model = await save('mnist-like', m, { labels: stripesClasses, normalization: 'zeroOne' });
  });

  it('fine-tunes every layer on an RGB dataset (as luma), and the result keeps the [?, h, w] input', async () => {
    const { start, outputPath } = await tune(model);
    assert.deepEqual(start.imageSize, [16, 16]);
    const out = await loadModel(path.join(outputPath, 'model.json'));
    assert.deepEqual(out.summary.inputShape, [null, 16, 16]);
    disposeModel(out);
  });

  it('computes embeddings of a folder', async () => {
    const loaded = await loadModel(model);
    const set = await computeEmbeddings({ loaded, datasetDir: dataset, layer: 'hidden', write: false });
    assert.equal(set.images.length, 24);
    assert.equal(set.dim, 8);
    disposeModel(loaded);
  });

  it('pretrains with the rotation task', async () => {
    const progress: TrainProgress[] = [];
    const r = await pretrainRotation({ modelJsonPath: model, imagesDir: dataset, settings: { epochs: 1 }, onProgress: (p) => progress.push(p) });
    const out = await loadModel(path.join(r.outputPath, 'model.json'));
    assert.deepEqual(out.summary.inputShape, [null, 16, 16]);
    disposeModel(out);
  });
});

describe("models that scale their own input", () => {
  /** Rescaling(1/255) then a conv, as Keras's image tutorials write it. */
  let rescaling = '';
  before(async () => {
    const m = tf.sequential({ name: 'rescaled_cnn' });
    m.add(tf.layers.rescaling({ scale: 1 / 255, offset: 0, inputShape: [16, 16, 3], name: 'rescaling' }));
    m.add(tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', name: 'conv' }));
    m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
    m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }));
    seedWeights(m, 32);
    rescaling = await save('rescaling', m);
  });

  it('a Rescaling layer at the input: raw pixels by default, and the summary says why', async () => {
    const loaded = await loadModel(rescaling);
    assert.equal(loaded.summary.normalization, 'raw');
    assert.match(loaded.summary.normalizationFrom!, /Rescaling layer "rescaling" \(x \* 0\.003922 \+ 0\)/);
    assert.deepEqual(loaded.summary.preprocessing, { layer: 'rescaling', className: 'Rescaling', description: 'x * 0.003922 + 0' });
    // The inspector's prediction for raw pixels is the model applied to the 0-255 values by hand.
    const image = await readImageFile(path.join(dataset, 'vertical', 'vertical-000.png'));
    const inspector = new Inspector();
    const r = await inspector.inspectImage(loaded, image, 'x.png', loaded.summary.normalization!);
    const expected = tf.tidy(() => (loaded.layers!.predict(tf.expandDims(resizeToTensor(image, 16, 16), 0)) as tf.Tensor).dataSync());
    assert.ok(Math.abs(r.predictions[0].probability - Math.max(...expected)) < 1e-6);
    inspector.dispose();
    disposeModel(loaded);
  });

  it('a fine-tune of every layer trains on raw pixels and its log says so', async () => {
    const { start } = await tune(rescaling);
    assert.equal(start.normalization, 'raw');
    assert.ok(formatStartLines(start).some((l) => /^Pixels: raw from the model's own Rescaling layer "rescaling"/.test(l)), formatStartLines(start).join('\n'));
  });

  it('metadata.json still decides when it says', async () => {
    const dir = at('models', 'rescaling-meta');
    fs.cpSync(path.dirname(rescaling), dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'metadata.json'), JSON.stringify({ normalization: 'zeroOne' }));
    const loaded = await loadModel(path.join(dir, 'model.json'));
    assert.equal(loaded.summary.normalization, 'zeroOne');
    assert.equal(loaded.summary.normalizationFrom, "the model's metadata.json");
    assert.equal(loaded.summary.preprocessing?.className, 'Rescaling');
    disposeModel(loaded);
  });

  it('a Normalization layer (tfjs names) loads, computes (x - mean) / std, and is detected', async () => {
    const m = tf.sequential({ name: 'normalized' });
    m.add(new NormalizationLayer({ axis: -1, inputShape: [16, 16, 3], name: 'normalization' } as never));
    m.add(tf.layers.flatten({ name: 'flat' }));
    m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }));
    m.getLayer('out').setWeights([tf.randomNormal([768, 3], 0, 0.05, 'float32', 33), tf.zeros([3])]);
    m.getLayer('normalization').setWeights([tf.tensor([120, 110, 100]), tf.tensor([3600, 2500, 1600]), tf.scalar(60000, 'int32')]);
    const file = await save('normalization', m);
    const loaded = await loadModel(file);
    assert.equal(loaded.summary.normalization, 'raw');
    assert.match(loaded.summary.normalizationFrom!, /Normalization layer "normalization" \(\(x - mean\) \/ std, mean 120, 110, 100\)/);
    const x = tf.randomUniform([1, 16, 16, 3], 0, 255, 'float32', 3);
    const inside = tf.tidy(() => {
      const run = tf.model({ inputs: loaded.layers!.inputs, outputs: loaded.layers!.getLayer('normalization').output as tf.SymbolicTensor });
      return (run.predict(x) as tf.Tensor).dataSync();
    });
    const xs = x.dataSync();
    const byHand = Array.from(xs, (v, i) => (v - [120, 110, 100][i % 3]) / [60, 50, 40][i % 3]);
    assert.ok(maxAbsDiff(inside, byHand) < 1e-4, `max diff ${maxAbsDiff(inside, byHand)}`);
    x.dispose();
    disposeModel(loaded);
  });

  for (const [what, write] of [
    ['Keras 2 .h5', (f: string, s: ModelSpec, w: ReturnType<typeof kerasWeights>) => writeKerasH5(f, s, w)],
    ['Keras 3 .keras', (f: string, s: ModelSpec, w: ReturnType<typeof kerasWeights>) => writeKerasV3(f, s, w)],
  ] as const) {
    it(`${what}: Rescaling and Normalization configs are detected`, async () => {
      for (const [cls, config, weights] of [
        ['Rescaling', { scale: 1 / 127.5, offset: -1 }, []],
        ['Normalization', { axis: -1, mean: null, variance: null, invert: false }, [['mean', [3]], ['variance', [3]], ['count', []]]],
      ] as const) {
        const spec: ModelSpec = {
          className: 'Sequential',
          name: 'pre',
          inputShape: [8, 8, 3],
          layers: [
            { className: cls, name: cls.toLowerCase(), config, weights: weights as unknown as [string, number[]][] },
            { className: 'Flatten', name: 'flat', config: { data_format: 'channels_last' } },
            { className: 'Dense', name: 'out', config: { units: 2, activation: 'softmax', use_bias: true }, weights: [['kernel', [192, 2]], ['bias', [2]]] },
          ],
        };
        const w = kerasWeights(spec, 7);
        if (cls === 'Normalization') w.set('normalization/mean', { shape: [3], values: Float32Array.of(127, 120, 110) });
        const file = at(`pre-${cls}-${what.replace(/\W/g, '')}.${what.endsWith('.h5') ? 'h5' : 'keras'}`);
        await write(file, spec, w);
        const loaded = await loadModel(file);
        assert.equal(loaded.summary.normalization, 'raw', `${what} ${cls}`);
        assert.equal(loaded.summary.preprocessing?.className, cls);
        disposeModel(loaded);
      }
    });
  }
});

describe('classifiers without a final Dense (mini-Xception heads)', () => {
  it('finds the cut before the convolution that is pooled into class scores, and says so', async () => {
    const m = tf.sequential({ name: 'all_conv' });
    m.add(tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'features' }));
    m.add(tf.layers.conv2d({ filters: 7, kernelSize: 3, padding: 'same', name: 'class_maps' }));
    m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
    m.add(tf.layers.activation({ activation: 'softmax', name: 'predictions' }));
    seedWeights(m, 34);
    const file = await save('all-conv', m, { labels: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] });
    const { start } = await tune(file);
    assert.equal(start.head.replaced, true);
    assert.equal(start.head.cutLayer, 'features');
    assert.match(start.head.reason, /class_maps → gap → predictions is a convolutional classifier .* so the new head follows features/);
  });
});

describe('regression outputs', () => {
  it('are shown as values, not classes', async () => {
    const m = tf.sequential({ name: 'age' });
    m.add(tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 2, kernelSize: 3, name: 'conv' }));
    m.add(tf.layers.flatten({ name: 'flat' }));
    m.add(tf.layers.dense({ units: 1, name: 'age' }));
    seedWeights(m, 36);
    const loaded = await loadModel(await save('regression', m));
    const inspector = new Inspector();
    const image = await readImageFile(fixture('images', 'rgb.png'));
    const r = await inspector.inspectImage(loaded, image, 'rgb.png', 'zeroOne');
    assert.equal(r.outputs?.[0].kind, 'values');
    assert.deepEqual(r.predictions, []);
    const expected = tf.tidy(() => (loaded.layers!.predict(tf.expandDims(tf.div(resizeToTensor(image, 16, 16), 255), 0)) as tf.Tensor).dataSync());
    assert.ok(Math.abs(r.values![0] - expected[0]) < 1e-5 * Math.max(1, Math.abs(expected[0])), `${r.values![0]} vs ${expected[0]}`);
    inspector.dispose();
    disposeModel(loaded);
  });
});

describe('models with several outputs', () => {
  let file = '';
  before(async () => {
    const input = tf.input({ shape: [16, 16, 3], name: 'image' });
    const f = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', name: 'conv' }).apply(input)) as tf.SymbolicTensor;
    const a = tf.layers.dense({ units: 6, activation: 'softmax', name: 'topic' }).apply(f) as tf.SymbolicTensor;
    const b = tf.layers.dense({ units: 3, activation: 'softmax', name: 'mood' }).apply(f) as tf.SymbolicTensor;
    const m = tf.model({ inputs: input, outputs: [a, b], name: 'two_heads' });
    seedWeights(m, 35);
    file = await save('two-heads', m);
  });

  it('lists every output in the summary', async () => {
    const loaded = await loadModel(file);
    assert.deepEqual(loaded.summary.outputs, [
      { name: 'topic', shape: [null, 6] },
      { name: 'mood', shape: [null, 3] },
    ]);
    disposeModel(loaded);
  });

  it('inspects every output and marks which one the predictions show', async () => {
    const loaded = await loadModel(file);
    const inspector = new Inspector();
    const image = await readImageFile(fixture('images', 'rgb.png'));
    const r = await inspector.inspectImage(loaded, image, 'rgb.png', 'zeroOne', { output: 1 });
    assert.deepEqual(r.outputs?.map((o) => [o.name, o.kind]), [
      ['topic', 'classes'],
      ['mood', 'classes'],
    ]);
    assert.equal(r.output, 1);
    assert.equal(r.predictions.length, 3, 'the mood output has 3 classes');
    const expected = tf.tidy(() => ((loaded.layers!.predict(tf.expandDims(tf.div(resizeToTensor(image, 16, 16), 255), 0)) as tf.Tensor[])[1]).dataSync());
    assert.ok(Math.abs(r.predictions[0].probability - Math.max(...expected)) < 1e-6);
    inspector.dispose();
    disposeModel(loaded);
  });

  it('a fine-tune works on the output that fits the classes, says which, and saves that one output', async () => {
    const { start, outputPath } = await tune(file);
    assert.match(start.head.reason, /^output 2 of 2 \(mood\)/);
    assert.ok(start.warnings.some((w) => /has 2 outputs \(topic \[\?, 6\], mood \[\?, 3\]\); the fine-tune works on output 2, mood, because it has 3 units/.test(w)), start.warnings.join('\n'));
    const out = await loadModel(path.join(outputPath, 'model.json'));
    assert.deepEqual(out.summary.outputs.map((o) => o.name), ['mood']);
    disposeModel(out);
  });
});
