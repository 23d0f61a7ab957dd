/**
 * Graph models as current converters write them (test/fixtures/graphs.ts):
 * they load and run on wasm with the same outputs as the cpu backend running
 * the unchanged graph; their layer table has shapes (from one zero run) and
 * counts only weights as params.
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { disposeModel, loadModel } from '../../src/engine/model';
import { readModelFiles } from '../../src/engine/io/modelFiles';
import { normalizeFusedOps } from '../../src/engine/io/graphFusion';
import { writeAutoencoderGraph, writeChannelsFirstGraph, writeFusedOddities, writeFusedTanh } from '../fixtures/graphs';
import { computeEmbeddings } from '../../src/engine/embed/compute';
import { computeActivations, disposeActivations } from '../../src/engine/inspect/activations';
import { fixture } from '../fixtures/models';
import { maxAbsDiff, setup } from './helpers';
import { readImageFile, toInputTensor } from '../../src/engine/image';
import { Inspector } from '../../src/engine/inspect/inspector';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-graphs-'));

/** The unchanged graph run on the cpu backend: the reference. */
async function cpuReference(modelJson: string, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const files = await readModelFiles(modelJson);
  const before = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const g = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
    const y = g.execute(tf.tensor(x, shape)) as tf.Tensor;
    const v = (await y.data()) as Float32Array;
    y.dispose();
    g.dispose();
    return v;
  } finally {
    await tf.setBackend(before);
  }
}

function seeded(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => ((i * 37) % 101) / 100);
}

describe('graph models from current converters', () => {
  before(async () => {
    await setup();
    writeAutoencoderGraph(path.join(tmp, 'autoencoder'));
    writeFusedOddities(path.join(tmp, 'oddities'));
    writeFusedTanh(path.join(tmp, 'tanh-fused'), true);
    writeFusedTanh(path.join(tmp, 'tanh-parts'), false);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('the raw autoencoder fails on wasm as the field test saw (the case this fixes)', async () => {
    const files = await readModelFiles(path.join(tmp, 'autoencoder', 'model.json'));
    const g = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
    assert.throws(() => g.execute(tf.zeros([1, 28, 28, 1])), /rank-1 bias/);
    g.dispose();
  });

  for (const [name, shape] of [
    ['autoencoder', [2, 28, 28, 1]],
    ['oddities', [2, 8, 8, 3]],
  ] as const) {
    it(`${name}: runs on wasm with the cpu backend's outputs (1e-5)`, async () => {
      const file = path.join(tmp, name, 'model.json');
      const x = seeded((shape as readonly number[]).reduce((a, b) => a * b, 1));
      const expected = await cpuReference(file, x, [...shape]);
      const loaded = await loadModel(file);
      assert.equal(tf.getBackend(), 'wasm');
      const y = loaded.graph!.execute(tf.tensor(x, [...shape])) as tf.Tensor;
      const got = await y.data();
      y.dispose();
      assert.ok(maxAbsDiff(got, expected) < 1e-5, `max diff ${maxAbsDiff(got, expected)}`);
      disposeModel(loaded);
    });
  }

  it('runs a fused tanh (no backend runs it fused) as the same graph written out in parts on cpu', async () => {
    const x = seeded(2 * 6 * 6 * 2);
    const expected = await cpuReference(path.join(tmp, 'tanh-parts', 'model.json'), x, [2, 6, 6, 2]);
    const loaded = await loadModel(path.join(tmp, 'tanh-fused', 'model.json'));
    const y = loaded.graph!.execute(tf.tensor(x, [2, 6, 6, 2])) as tf.Tensor;
    const got = await y.data();
    y.dispose();
    assert.ok(maxAbsDiff(got, expected) < 1e-5, `max diff ${maxAbsDiff(got, expected)}`);
    assert.deepEqual(normalizeFusedOps((await readModelFiles(path.join(tmp, 'tanh-fused', 'model.json'))).artifacts).report.split, ['out']);
    disposeModel(loaded);
  });

  it('reshapes a [1, 1, 1, C] bias in place and splits what cannot be reshaped', async () => {
    const ae = normalizeFusedOps((await readModelFiles(path.join(tmp, 'autoencoder', 'model.json'))).artifacts);
    assert.deepEqual(ae.report.reshaped.sort(), ['conv2d_1/Reshape', 'conv2d_2/Reshape', 'depthwise_1/Reshape']);
    assert.deepEqual(ae.report.split, []);
    const odd = normalizeFusedOps((await readModelFiles(path.join(tmp, 'oddities', 'model.json'))).artifacts);
    // One value for 4 channels, a bias a plain AddV2 reads too: split. The [1, 3] MatMul bias: reshaped.
    assert.deepEqual(odd.report.split, ['conv_a', 'conv_b']);
    assert.deepEqual(odd.report.reshaped, ['dense/bias']);
  });

  it('leaves a graph without fused ops as it is', async () => {
    const files = await readModelFiles(fixture('graph', 'model.json'));
    assert.equal(normalizeFusedOps(files.artifacts).artifacts, files.artifacts);
  });

  it('inspects an autoencoder: its output as an image (the cpu reference to one grey level) with the difference to the input, no classes', async () => {
    const file = path.join(tmp, 'autoencoder', 'model.json');
    const loaded = await loadModel(file);
    const image = await readImageFile(fixture('images', 'rgb.png'));
    const inspector = new Inspector();
    const r = await inspector.inspectImage(loaded, image, 'rgb.png', 'zeroOne');
    assert.deepEqual(r.outputs, [{ name: 'Identity', shape: [28, 28, 1], kind: 'image' }]);
    assert.deepEqual(r.predictions, []);
    assert.equal(r.image!.width, 28);
    const x = tf.tidy(() => toInputTensor(image, 28, 28, 'zeroOne', 1).dataSync() as Float32Array);
    const y = await cpuReference(file, x, [1, 28, 28, 1]);
    const grey = Array.from(r.image!.rgb.filter((_, i) => i % 3 === 0));
    assert.ok(maxAbsDiff(grey, Array.from(y, (v) => Math.round(v * 255))) <= 1);
    const diff = Array.from(y, (v, i) => Math.abs(v - x[i]) * 255);
    assert.ok(Math.abs(r.image!.meanAbsDiff! - diff.reduce((a, b) => a + b, 0) / diff.length) < 1e-3);
    inspector.dispose();
    disposeModel(loaded);
  });

  it("summarises shapes from one zero run, every output's shape and only weights as params", async () => {
    const loaded = await loadModel(path.join(tmp, 'autoencoder', 'model.json'));
    const s = loaded.summary;
    assert.deepEqual(s.inputShape, [null, 28, 28, 1]);
    assert.deepEqual(s.outputs, [{ name: 'Identity', shape: [null, 28, 28, 1] }]);
    const row = (n: string) => s.layers.find((r) => r.path === n)!;
    assert.deepEqual(row('functional_1/conv2d_1/Relu').outputShape, [null, 14, 14, 8]);
    assert.deepEqual(row('functional_1/up_sampling2d_1/resize').outputShape, [null, 28, 28, 8]);
    // The resize's int32 size constant is not a param.
    assert.equal(row('functional_1/up_sampling2d_1/resize').params, 0);
    assert.equal(row('functional_1/conv2d_1/Relu').params, 3 * 3 * 8 + 8);
    assert.equal(s.totalParams, 3 * 3 * 8 + 8 + 3 * 3 * 8 + 8 + 3 * 3 * 8 + 1);
    disposeModel(loaded);
  });
});

describe('graph models converted from PyTorch through ONNX (channels-first input, batch fixed at 1)', () => {
  const dir = (n: string) => path.join(tmp, n);
  before(async () => {
    await setup();
    writeChannelsFirstGraph(dir('nchw'));
    writeChannelsFirstGraph(dir('nhwc'), true);
  });

  it('shows the input as images are fed and says how they reach the declared one', async () => {
    const loaded = await loadModel(path.join(dir('nchw'), 'model.json'));
    assert.deepEqual(loaded.summary.inputShape, [1, 8, 8, 3]);
    assert.deepEqual(loaded.summary.graphInput?.shape, [1, 3, 8, 8]);
    assert.match(loaded.summary.graphInput!.note, /channels-first .*transposed.*batch size fixed at 1/);
    disposeModel(loaded);
    const plain = await loadModel(path.join(dir('nhwc'), 'model.json'));
    assert.equal(plain.summary.graphInput, undefined);
    disposeModel(plain);
  });

  it('runs a batch of 3 [n, h, w, c] images with the outputs of the same weights as a TensorFlow graph (1e-5), without leaking', async () => {
    const x = seeded(3 * 8 * 8 * 3);
    const expected = await cpuReference(path.join(dir('nhwc'), 'model.json'), x, [3, 8, 8, 3]);
    const loaded = await loadModel(path.join(dir('nchw'), 'model.json'));
    const xs = tf.tensor(x, [3, 8, 8, 3]);
    const before = tf.memory().numTensors;
    const y = loaded.graph!.predict(xs) as tf.Tensor;
    assert.deepEqual(y.shape, [3, 3]);
    assert.ok(maxAbsDiff(await y.data(), expected) < 1e-5, `max diff ${maxAbsDiff(await y.data(), expected)}`);
    const z = (await loaded.graph!.executeAsync(xs)) as tf.Tensor;
    assert.ok(maxAbsDiff(await z.data(), expected) < 1e-5);
    y.dispose();
    z.dispose();
    assert.equal(tf.memory().numTensors, before);
    xs.dispose();
    disposeModel(loaded);
  });

  it('shows channels-first maps between the transposes as [h, w, c] maps, as the same weights in TensorFlow layout give them', async () => {
    const loaded = await loadModel(path.join(dir('nchw'), 'model.json'));
    const plain = await loadModel(path.join(dir('nhwc'), 'model.json'));
    assert.deepEqual([...loaded.channelsFirst!].sort(), ['relu', 'transpose_2']);
    assert.equal(plain.channelsFirst, undefined);
    const x = tf.tensor(seeded(8 * 8 * 3), [1, 8, 8, 3]);
    const a = computeActivations(loaded, x);
    const b = computeActivations(plain, x);
    for (const [got, want] of [['relu', 'relu'], ['transpose_2', 'add'], ['add', 'add']]) {
      const g = a.byPath.get(got)!;
      const w = b.byPath.get(want)!;
      assert.deepEqual(g.shape, w.shape, got);
      assert.ok(maxAbsDiff(g.dataSync(), w.dataSync()) < 1e-5, got);
    }
    disposeActivations(a);
    disposeActivations(b);
    x.dispose();
    // Embeddings at a channels-first node are pooled over its spatial axes, not over channels and rows.
    const images = path.join(tmp, 'images-relu');
    fs.mkdirSync(images, { recursive: true });
    for (const n of ['rgb.png', 'photo.jpg']) fs.copyFileSync(fixture('images', n), path.join(images, n));
    const e1 = await computeEmbeddings({ loaded, datasetDir: images, layer: 'relu', write: false });
    const e2 = await computeEmbeddings({ loaded: plain, datasetDir: images, layer: 'relu', write: false });
    assert.equal(e1.dim, e2.dim);
    assert.ok(maxAbsDiff(e1.vectors, e2.vectors) < 1e-5);
    disposeModel(loaded);
    disposeModel(plain);
  });

  it('inspects an image (it was refused as "8-channel input") and embeds a folder', async () => {
    const loaded = await loadModel(path.join(dir('nchw'), 'model.json'));
    const image = await readImageFile(fixture('images', 'rgb.png'));
    const inspector = new Inspector();
    const r = await inspector.inspectImage(loaded, image, 'rgb.png', 'zeroOne');
    assert.equal(r.predictions.length, 3);
    const x = tf.tidy(() => toInputTensor(image, 8, 8, 'zeroOne', 3).dataSync() as Float32Array);
    const expected = await cpuReference(path.join(dir('nhwc'), 'model.json'), x, [1, 8, 8, 3]);
    const top = expected.indexOf(Math.max(...expected));
    assert.equal(r.predictions[0].index, top);
    inspector.dispose();
    const images = path.join(tmp, 'images');
    fs.mkdirSync(images, { recursive: true });
    for (const n of ['rgb.png', 'photo.jpg']) fs.copyFileSync(fixture('images', n), path.join(images, n));
    const e = await computeEmbeddings({ loaded, datasetDir: images, write: false });
    assert.equal(e.images.length, 2);
    assert.equal(e.vectors.length, 2 * e.dim);
    disposeModel(loaded);
  });
});
