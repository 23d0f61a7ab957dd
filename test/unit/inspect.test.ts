import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { EngineError } from '../../src/engine/errors';
import { readImageFile, toInputTensor } from '../../src/engine/image';
import { flatGraph } from '../../src/engine/inspect/flatGraph';
import { Inspector } from '../../src/engine/inspect/inspector';
import { loadModel, walkLayers } from '../../src/engine/model';
import { fixture } from '../fixtures/models';
import { maxAbsDiff, rejectsWith, setup } from './helpers';
import { tmShared, img, inMemory, inputFor, assertClose, intermediate } from './inspectHelpers';

describe('inspection: every layer in one pass', () => {
  before(setup);
  const inspector = new Inspector();
  after(() => inspector.dispose());

  it('tiny-cnn: each layer equals a plain predict of its intermediate model; stats, predictions and labels are right', async () => {
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    const image = await readImageFile(img('rgb.png'));
    const r = await inspector.inspectImage(loaded, image, 'rgb.png', 'zeroOne');
    const x = inputFor(loaded, image, 'zeroOne');
    const model = loaded.layers!;
    assert.deepEqual(r.layers.map((l) => l.path), ['conv1', 'bn1', 'pool1', 'conv2', 'gap', 'head']);
    assert.deepEqual(r.layers.map((l) => l.kind), ['map', 'map', 'map', 'map', 'vector', 'vector']);
    assert.deepEqual(r.layers[0].shape, [14, 14, 4]);
    for (const info of r.layers) {
      const got = inspector.activation(loaded.summary.modelPath, info.path)!;
      const want = intermediate(model, info.path, x);
      assertClose(got, want, info.path);
      const v = Array.from(want.dataSync());
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const zeros = v.filter((u) => u === 0).length / v.length;
      assert.ok(Math.abs(info.mean - mean) < 1e-5 * Math.max(1, Math.abs(mean)), `${info.path} mean ${info.mean} vs ${mean}`);
      assert.ok(Math.abs(info.zeros - zeros) < 1e-6, `${info.path} zeros ${info.zeros} vs ${zeros}`);
      want.dispose();
    }
    assert.ok(r.layers[0].zeros > 0, 'conv1 has a ReLU, so some zeros');
    const p = (model.predict(x) as tf.Tensor).dataSync();
    const order = [0, 1, 2].sort((a, b) => p[b] - p[a]);
    assert.deepEqual(r.predictions.map((q) => q.index), order);
    assert.deepEqual(r.predictions.map((q) => q.label), order.map((i) => ['circle', 'square', 'triangle'][i]));
    r.predictions.forEach((q) => assert.equal(q.probability, p[q.index]));
    assert.equal(r.probabilities, true);
    assert.deepEqual([r.input.width, r.input.height, r.input.rgb.length], [16, 16, 16 * 16 * 3]);
    assert.equal(r.notes, undefined);
    x.dispose();
    inspector.release(loaded.summary.modelPath);
    model.dispose();
  });

  it('nested: inner layers equal their sub-model run on the previous output', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const image = await readImageFile(img('photo.jpg'));
    const r = await inspector.inspectImage(loaded, image, 'photo.jpg', 'minusOneOne');
    assert.deepEqual(r.layers.map((l) => l.path), loaded.summary.layers.map((l) => l.path), 'one LayerInfo per row of the layer table');
    const x = inputFor(loaded, image, 'minusOneOne');
    const model = loaded.layers!;
    const features = model.getLayer('features') as tf.LayersModel;
    const backbone = features.getLayer('backbone') as tf.LayersModel;
    const head = model.getLayer('head_seq') as tf.LayersModel;
    const act = (p: string) => inspector.activation(loaded.summary.modelPath, p)!;
    for (const name of ['Conv1', 'bn_Conv1', 'Conv1_relu', 'dw1', 'gap']) {
      const want = intermediate(backbone, name, x);
      assertClose(act(`features/backbone/${name}`), want, name);
      want.dispose();
    }
    assertClose(act('features/backbone/input_1'), x, 'input_1');
    const feat = features.predict(x) as tf.Tensor;
    assertClose(act('features'), feat, 'features');
    assertClose(act('features/backbone'), feat, 'features/backbone');
    const d1 = intermediate(head, 'dense_1', feat);
    assertClose(act('head_seq/dense_1'), d1, 'head_seq/dense_1');
    const y = model.predict(x) as tf.Tensor;
    assertClose(act('head_seq'), y, 'head_seq');
    assertClose(act('head_seq/dense_2'), y, 'head_seq/dense_2');
    assert.deepEqual(r.predictions.map((p) => p.label).sort(), ['no', 'yes']);
    assert.ok(Math.abs(r.predictions[0].probability - Math.max(...y.dataSync())) < 1e-7);
    tf.dispose([x, feat, d1, y]);
    inspector.release(loaded.summary.modelPath);
    model.dispose();
  });

  it('the Teachable Machine export: nested MobileNet layers equal their sub-model', { skip: !fs.existsSync(tmShared) && 'no ../shared/fixtures (not in this clone): the real Teachable Machine export was not checked' }, async () => {
    const loaded = await loadModel(tmShared);
    const image = await readImageFile(img('photo.jpg'));
    const r = await inspector.inspectImage(loaded, image, 'photo.jpg', 'minusOneOne');
    assert.equal(r.layers.length, loaded.summary.layers.length);
    const x = inputFor(loaded, image, 'minusOneOne');
    const model = loaded.layers!;
    const outer = model.layers[0] as tf.LayersModel;
    const mobilenet = outer.layers[0] as tf.LayersModel;
    const prefix = `${outer.name}/${mobilenet.name}`;
    for (const name of ['Conv1', 'bn_Conv1', 'block_1_depthwise_relu', 'block_2_add', 'block_8_project_BN', 'block_16_project', 'out_relu']) {
      const want = intermediate(mobilenet, name, x);
      assertClose(inspector.activation(loaded.summary.modelPath, `${prefix}/${name}`)!, want, name);
      want.dispose();
    }
    const y = model.predict(x) as tf.Tensor;
    assertClose(inspector.activation(loaded.summary.modelPath, loaded.summary.layers.filter((l) => l.depth === 0).at(-1)!.path)!, y, 'output');
    assert.equal(r.probabilities, true);
    assert.deepEqual(r.predictions.map((p) => p.label).sort(), ['diseased leaf', 'healthy leaf']);
    const maps = r.layers.filter((l) => l.kind === 'map');
    assert.ok(maps.length > 100, `${maps.length} layers with feature maps`);
    // Grad-CAM at the backbone's last map, against the rest of the model by hand (GAP, dense, pre-softmax dense).
    const cls = r.predictions[0].index;
    const cam = await inspector.gradCam(loaded.summary.modelPath, `${prefix}/out_relu`, cls);
    const head = model.layers[1] as tf.LayersModel;
    const expected = tf.tidy(() => {
      const A = intermediate(mobilenet, 'out_relu', x);
      const [k, b] = head.layers[1].getWeights();
      const score = (a: tf.Tensor) => {
        const z = tf.matMul(head.layers[0].apply(outer.layers[1].apply(a)) as tf.Tensor2D, k as tf.Tensor2D);
        return tf.sum(tf.slice(b ? tf.add(z, b) : z, [0, cls], [1, 1])) as tf.Scalar; // Teachable Machine's last Dense has no bias
      };
      const cam4 = tf.relu(tf.sum(tf.mul(A, tf.mean(tf.grad(score)(A), [0, 1, 2])), -1, true)) as tf.Tensor4D;
      const big = tf.image.resizeBilinear(cam4, [224, 224], false, true);
      return tf.round(tf.mul(tf.div(big, tf.maximum(tf.max(big), 1e-12)), 255));
    });
    assert.ok(maxAbsDiff(cam.heat, expected.dataSync()) <= 1, `Grad-CAM max difference ${maxAbsDiff(cam.heat, expected.dataSync())}`);
    expected.dispose();
    tf.dispose([x, y]);
    inspector.release(loaded.summary.modelPath);
    model.dispose();
  });

  it('a graph model: every op output, predictions; Grad-CAM says why not', async () => {
    const loaded = await loadModel(fixture('graph', 'model.json'));
    const r = await inspector.inspect(loaded, img('rgb.png'), 'zeroOne');
    assert.deepEqual(r.layers.map((l) => `${l.path}:${l.kind}`), ['input:map', 'conv/Conv2D:map', 'conv/Relu:map', 'pool/Mean:vector', 'dense/MatMul:vector', 'Softmax:vector']);
    assert.equal(r.probabilities, true);
    assert.equal(r.predictions.length, 2);
    const relu = r.layers.find((l) => l.path === 'conv/Relu')!;
    const conv = inspector.activation(loaded.summary.modelPath, 'conv/Conv2D')!;
    const expected = tf.tidy(() => tf.mean(tf.relu(conv)).dataSync()[0]);
    assert.ok(Math.abs(relu.mean - expected) < 1e-6);
    await rejectsWith(inspector.gradCam(loaded.summary.modelPath, 'conv/Relu', 0), 'bad-input', /is a graph model; Grad-CAM needs a layers model/);
    inspector.release(loaded.summary.modelPath);
    loaded.graph!.dispose();
  });
});

describe('layer maps', () => {
  before(setup);
  const inspector = new Inspector();
  after(() => inspector.dispose());

  it('quantises per channel, channel-major, with exact stats; downsampled grids are area means', async () => {
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    await inspector.inspect(loaded, img('photo.jpg'), 'zeroOne');
    const t = inspector.activation(loaded.summary.modelPath, 'conv1')!; // [1, 14, 14, 4]
    const v = t.dataSync();
    const [h, w, c] = [14, 14, 4];
    const at = (y: number, x: number, k: number) => v[(y * w + x) * c + k];
    const full = await inspector.layerMaps(loaded.summary.modelPath, 'conv1', 0);
    assert.deepEqual([full.kind, full.channels, full.height, full.width, full.fullHeight, full.fullWidth, full.data.length], ['map', 4, 14, 14, 14, 14, 4 * 14 * 14]);
    for (let k = 0; k < c; k++) {
      const ch = Array.from({ length: h * w }, (_, i) => at(Math.floor(i / w), i % w, k));
      const min = Math.min(...ch);
      const max = Math.max(...ch);
      const mean = ch.reduce((a, b) => a + b, 0) / ch.length;
      const std = Math.sqrt(ch.reduce((a, b) => a + (b - mean) ** 2, 0) / ch.length);
      const s = full.stats[k];
      assert.ok(Math.abs(s.min - min) < 1e-6 && Math.abs(s.max - max) < 1e-6, `channel ${k} min/max`);
      assert.ok(Math.abs(s.mean - mean) < 1e-5 && Math.abs(s.std - std) < 1e-4, `channel ${k} mean/std: ${s.mean}/${s.std} vs ${mean}/${std}`);
      assert.ok(Math.abs(s.zeros - ch.filter((u) => u === 0).length / ch.length) < 1e-6, `channel ${k} zeros`);
      const step = (max - min) / 255;
      for (let i = 0; i < h * w; i++) {
        const back = s.min + (full.data[k * h * w + i] / 255) * (s.max - s.min);
        assert.ok(Math.abs(back - ch[i]) <= step / 2 + 1e-6, `channel ${k} value ${i}: ${back} vs ${ch[i]}`);
      }
    }
    // 14 -> at most 5: factor 3, 5x5 cells; the last cell mirrors the edge (rows 12, 13, 13).
    const small = await inspector.layerMaps(loaded.summary.modelPath, 'conv1', 5);
    assert.deepEqual([small.height, small.width, small.fullHeight], [5, 5, 14]);
    assert.deepEqual(small.stats, full.stats, 'stats are those of the full map');
    const idx = (i: number) => Math.min(i, 2 * 14 - 1 - i); // symmetric mirror
    for (let k = 0; k < c; k++) {
      for (let cy = 0; cy < 5; cy++) {
        for (let cx = 0; cx < 5; cx++) {
          let sum = 0;
          for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) sum += at(idx(cy * 3 + dy), idx(cx * 3 + dx), k);
          const s = small.stats[k];
          const back = s.min + (small.data[k * 25 + cy * 5 + cx] / 255) * (s.max - s.min);
          assert.ok(Math.abs(back - sum / 9) <= (s.max - s.min) / 510 + 1e-6, `channel ${k} cell ${cy},${cx}: ${back} vs ${sum / 9}`);
        }
      }
    }
    const vec = await inspector.layerMaps(loaded.summary.modelPath, 'head', 64);
    assert.deepEqual([vec.kind, vec.channels, vec.height, vec.width, vec.stats.length], ['vector', 3, 1, 1, 1]);
    const probs = inspector.activation(loaded.summary.modelPath, 'head')!.dataSync();
    assert.ok(Math.abs(vec.stats[0].max - Math.max(...probs)) < 1e-7);
    assert.equal(vec.data[Array.from(probs).indexOf(Math.max(...probs))], 255);
    inspector.release(loaded.summary.modelPath);
    loaded.layers!.dispose();
  });

  it('refuses clearly: no inspection yet, unknown layer, a layer that is neither map nor vector', async () => {
    const m = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [4, 4, 3], name: 'flat' }), tf.layers.reshape({ targetShape: [6, 8], name: 'grid' }), tf.layers.flatten({ name: 'flat2' }), tf.layers.dense({ units: 2, name: 'out' })] });
    const loaded = inMemory(m, 'no-maps');
    await rejectsWith(inspector.layerMaps(loaded.summary.modelPath, 'flat', 64), 'bad-input', /no-maps has not been inspected with an image yet; pick an image first/);
    const r = await inspector.inspect(loaded, img('rgb.png'), 'zeroOne');
    assert.deepEqual(r.layers.map((l) => l.kind), ['vector', 'other', 'vector', 'vector']);
    assert.match(r.notes?.join('\n') ?? '', /No layer of no-maps outputs a feature map \[h, w, c\], so there are no channel grids to show/);
    assert.match(r.notes?.join('\n') ?? '', /no labels/);
    assert.equal(r.probabilities, false, 'a dense layer without softmax is not a distribution');
    await rejectsWith(inspector.layerMaps(loaded.summary.modelPath, 'nope', 64), 'bad-input', /has no layer "nope"/);
    await rejectsWith(inspector.layerMaps(loaded.summary.modelPath, 'grid', 64), 'bad-input', /layer grid outputs shape \[6, 8\], which is neither a feature map/);
    await rejectsWith(inspector.gradCam(loaded.summary.modelPath, 'flat', 0), 'bad-input', /Grad-CAM needs a layer with a feature map/);
    inspector.release(loaded.summary.modelPath);
    m.dispose();
  });

  it('refuses images it cannot read and models it cannot feed', async () => {
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    await rejectsWith(inspector.inspect(loaded, img('text.png'), 'zeroOne'), 'bad-image', /text\.png is not a PNG or JPEG image/);
    await rejectsWith(inspector.inspect(loaded, img('truncated.jpg'), 'zeroOne'), 'bad-image', /truncated\.jpg is truncated/);
    const four = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [8, 8, 4], filters: 2, kernelSize: 3, name: 'c' })] });
    await rejectsWith(inspector.inspect(inMemory(four, 'rgba-model'), img('rgb.png'), 'zeroOne'), 'bad-input', /rgba-model expects 4-channel input; Layer Lens feeds images as RGB \(3 channels\) or greyscale \(1\)/);
    const flat = tf.sequential({ layers: [tf.layers.dense({ inputShape: [784], units: 2, name: 'd' })] });
    await rejectsWith(inspector.inspect(inMemory(flat, 'mlp'), img('rgb.png'), 'zeroOne'), 'bad-input', /mlp takes input \[\?, 784\], not an image/);
    const a = tf.input({ shape: [8, 8, 3] });
    const b = tf.input({ shape: [8, 8, 3] });
    const two = tf.model({ inputs: [a, b], outputs: tf.layers.add().apply([a, b]) as tf.SymbolicTensor });
    await rejectsWith(inspector.inspect(inMemory(two, 'siamese'), img('rgb.png'), 'zeroOne'), 'bad-input', /siamese takes 2 inputs; inspecting with an image needs a model with one image input/);
    const free = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [null, null, 3] as unknown as number[], filters: 2, kernelSize: 3, name: 'fcn' })] });
    const r = await inspector.inspect(inMemory(free, 'any-size'), img('rgb.png'), 'zeroOne');
    assert.deepEqual([r.input.width, r.input.height, ...r.layers[0].shape], [20, 12, 10, 18, 2], 'a model of any input size sees the image at its own size');
    two.dispose();
    free.dispose();
    four.dispose();
    flat.dispose();
    loaded.layers!.dispose();
  });

  it('feeds greyscale models luma, including [h, w] inputs without a channel axis', async () => {
    const image = await readImageFile(img('rgb.png'));
    const grey = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [6, 10, 1], filters: 1, kernelSize: 1, useBias: false, kernelInitializer: 'ones', name: 'id' })] });
    const r1 = await inspector.inspectImage(inMemory(grey, 'grey'), image, 'rgb.png', 'raw');
    const mnist = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [6, 10], name: 'flat' }), tf.layers.dense({ units: 2, name: 'd' })] });
    await inspector.inspectImage(inMemory(mnist, 'mnist'), image, 'rgb.png', 'raw');
    const expected = toInputTensor(image, 6, 10, 'raw', 1);
    assertClose(inspector.activation(inMemory(grey, 'grey').summary.modelPath, 'id')!, tf.expandDims(expected, 0), 'luma through a 1x1 identity conv');
    assertClose(inspector.activation(inMemory(mnist, 'mnist').summary.modelPath, 'flat')!, tf.reshape(expected, [1, 60]), 'flattened luma');
    assert.deepEqual(r1.layers[0].shape, [6, 10, 1]);
    expected.dispose();
    inspector.dispose();
    grey.dispose();
    mnist.dispose();
  });
});

describe('memory', () => {
  before(setup);

  it('100 inspections (with maps and Grad-CAM) leave the tensor count where it started', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const images = await Promise.all(['rgb.png', 'photo.jpg', 'alpha.png'].map((n) => readImageFile(img(n))));
    const start = tf.memory().numTensors;
    const inspector = new Inspector();
    let during: number | undefined;
    for (let i = 0; i < 100; i++) {
      await inspector.inspectImage(loaded, images[i % 3], `image ${i}`, 'minusOneOne');
      await inspector.layerMaps(loaded.summary.modelPath, 'features/backbone/dw1', 4);
      if (i % 10 === 0) await inspector.gradCam(loaded.summary.modelPath, 'features/backbone/dw1', i % 2);
      const now = tf.memory().numTensors;
      if (during === undefined) during = now;
      assert.equal(now, during, `inspection ${i}: replacing the image must dispose the previous activations`);
    }
    assert.ok(during! > start, 'activations are kept between calls');
    inspector.dispose();
    assert.equal(tf.memory().numTensors, start);
    loaded.layers!.dispose();
  });
});

describe('Grad-CAM', () => {
  before(setup);
  const inspector = new Inspector();
  after(() => inspector.dispose());

  it('highlights the quadrant that holds the evidence for each class', async () => {
    // conv "red" and "green" detectors -> GAP -> class 0 = red, class 1 = green.
    const input = tf.input({ shape: [16, 16, 3] });
    const conv = tf.layers.conv2d({ filters: 2, kernelSize: 1, activation: 'relu', name: 'detect' });
    const gap = tf.layers.globalAveragePooling2d({ name: 'gap' });
    const head = tf.layers.dense({ units: 2, activation: 'softmax', name: 'head' });
    const model = tf.model({ inputs: input, outputs: head.apply(gap.apply(conv.apply(input))) as tf.SymbolicTensor });
    conv.setWeights([tf.tensor4d([1, -1, -1, 1, 0, 0], [1, 1, 3, 2]), tf.zeros([2])]);
    head.setWeights([tf.tensor2d([4, -4, -4, 4], [2, 2]), tf.zeros([2])]);
    // Red square top-left, green square bottom-right, black elsewhere.
    const data = new Uint8Array(16 * 16 * 3);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        if (x < 8 && y < 8) data[(y * 16 + x) * 3] = 255;
        if (x >= 8 && y >= 8) data[(y * 16 + x) * 3 + 1] = 255;
      }
    }
    const loaded = inMemory(model, 'quadrants', ['red', 'green']);
    await inspector.inspectImage(loaded, { width: 16, height: 16, data }, 'quadrants.png', 'zeroOne');
    const quadrantMeans = (heat: Uint8Array) => {
      const q = [0, 0, 0, 0];
      for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) q[(y < 8 ? 0 : 2) + (x < 8 ? 0 : 1)] += heat[y * 16 + x] / 64;
      return q; // TL, TR, BL, BR
    };
    const red = await inspector.gradCam(loaded.summary.modelPath, 'detect', 0);
    assert.deepEqual([red.height, red.width, red.label, red.heat.length], [16, 16, 'red', 256]);
    const [tl, tr, bl, br] = quadrantMeans(red.heat);
    assert.ok(tl > 200 && br < 20 && tr < 20 && bl < 20, `red: TL ${tl} TR ${tr} BL ${bl} BR ${br}`);
    const green = quadrantMeans((await inspector.gradCam(loaded.summary.modelPath, 'detect', 1)).heat);
    assert.ok(green[3] > 200 && green[0] < 20, `green: ${green.map((v) => v.toFixed(0)).join(' ')}`);
    await rejectsWith(inspector.gradCam(loaded.summary.modelPath, 'detect', 2), 'bad-input', /class 2 does not exist; the model has 2 outputs/);
    await rejectsWith(inspector.gradCam(loaded.summary.modelPath, 'nope', 0), 'bad-input', /the model has no layer "nope"/);
    model.dispose();
    await rejectsWith(inspector.gradCam(loaded.summary.modelPath, 'detect', 0), 'bad-input', /quadrants was reloaded since this image was inspected; inspect the image again/);
  });

  it('works inside a nested backbone and matches a Grad-CAM computed by hand', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const image = await readImageFile(img('photo.jpg'));
    await inspector.inspectImage(loaded, image, 'photo.jpg', 'minusOneOne');
    const model = loaded.layers!;
    const features = model.getLayer('features') as tf.LayersModel;
    const backbone = features.getLayer('backbone') as tf.LayersModel;
    const head = model.getLayer('head_seq') as tf.LayersModel;
    const x = inputFor(loaded, image, 'minusOneOne');
    for (const cls of [0, 1]) {
      const got = await inspector.gradCam(loaded.summary.modelPath, 'features/backbone/dw1', cls);
      const expected = tf.tidy(() => {
        const A = intermediate(backbone, 'dw1', x);
        // The rest of the model by hand: GAP, dense_1, then dense_2's pre-softmax score.
        const [k2, b2] = head.getLayer('dense_2').getWeights();
        const score = (a: tf.Tensor) => {
          const z = tf.add(tf.matMul(head.getLayer('dense_1').apply(backbone.getLayer('gap').apply(a)) as tf.Tensor2D, k2 as tf.Tensor2D), b2);
          return tf.sum(tf.slice(z, [0, cls], [1, 1])) as tf.Scalar;
        };
        const g = tf.grad(score)(A);
        const cam = tf.relu(tf.sum(tf.mul(A, tf.mean(g, [0, 1, 2])), -1, true)) as tf.Tensor4D;
        const big = tf.image.resizeBilinear(cam, [16, 16], false, true);
        return tf.round(tf.mul(tf.div(big, tf.maximum(tf.max(big), 1e-12)), 255));
      });
      const e = expected.dataSync();
      assert.ok(maxAbsDiff(got.heat, e) <= 1, `class ${cls}: max difference ${maxAbsDiff(got.heat, e)}`);
      assert.equal(Math.max(...got.heat), 255);
      expected.dispose();
    }
    x.dispose();
    inspector.release(loaded.summary.modelPath);
    model.dispose();
  });
});

describe('flat graph', () => {
  before(setup);

  it('does not touch the user model: no inbound nodes are added, layer.output still works', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const counts = () => [...walkLayers(loaded.layers!)].map(({ layer }) => layer.inboundNodes.length);
    const before = counts();
    flatGraph(loaded.layers!);
    const inspector = new Inspector();
    await inspector.inspect(loaded, img('rgb.png'), 'minusOneOne');
    assert.deepEqual(counts(), before);
    const backbone = (loaded.layers!.getLayer('features') as tf.LayersModel).getLayer('backbone') as tf.LayersModel;
    assert.ok(backbone.getLayer('dw1').output, 'layer.output is still defined');
    inspector.dispose();
    loaded.layers!.dispose();
  });

  it('is an EngineError-free plan for every fixture', async () => {
    for (const name of ['tiny-cnn', 'nested', 'tiny-cnn-quantized']) {
      const loaded = await loadModel(fixture(name, 'model.json'));
      const g = flatGraph(loaded.layers!);
      for (const row of loaded.summary.layers) assert.ok(g.layerSlots.has(row.path), `${name}: ${row.path} has an output slot`);
      assert.ok(!(g instanceof EngineError));
      loaded.layers!.dispose();
    }
  });
});
