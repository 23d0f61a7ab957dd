/**
 * Keras .h5 and .keras files opened without Python: files made by our own
 * writer (test/fixtures/keras.ts, the layouts Keras 2 and 3 write) checked
 * against the same model built with tf.layers and given the same weights
 * (the real Keras files in ../shared/fixtures: kerasMnist.test.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { strToU8, zipSync } from 'fflate';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { snakeCase } from '../../src/engine/io/keras';
import { saveLayersModel } from '../../src/engine/io/save';
import { disposeModel, loadModel } from '../../src/engine/model';
import { readImageFile } from '../../src/engine/image';
import { Inspector } from '../../src/engine/inspect/inspector';
import { fixture } from '../fixtures/models';
import { defaultOutputPath } from '../../src/engine/train/finetune';
import { kerasConfig, kerasWeights, writeKerasH5, writeKerasV3, type LayerSpec, type ModelSpec } from '../fixtures/keras';
import { maxAbsDiff, predict, rejectsWith, setup } from './helpers';

const root = path.resolve(__dirname, '../..');

const glorot = { class_name: 'GlorotUniform', config: { seed: null } };
const zeros = { class_name: 'Zeros', config: {} };
const ones = { class_name: 'Ones', config: {} };
const dense = (units: number, activation: string, extra: Record<string, unknown> = {}) => ({
  units,
  activation,
  use_bias: true,
  kernel_initializer: glorot,
  bias_initializer: zeros,
  kernel_regularizer: null,
  bias_regularizer: null,
  activity_regularizer: null,
  kernel_constraint: null,
  bias_constraint: null,
  ...extra,
});
const bnConfig = {
  axis: -1,
  momentum: 0.99,
  epsilon: 0.001,
  center: true,
  scale: true,
  beta_initializer: zeros,
  gamma_initializer: ones,
  moving_mean_initializer: zeros,
  moving_variance_initializer: ones,
  beta_regularizer: null,
  gamma_regularizer: null,
  beta_constraint: null,
  gamma_constraint: null,
};
const bnWeights = (n: number): [string, number[]][] => [
  ['gamma', [n]],
  ['beta', [n]],
  ['moving_mean', [n]],
  ['moving_variance', [n]],
];

/** A small CNN: conv, batch norm, pooling, depthwise conv, dense layers with an L2 regularizer and dropout. */
const cnn: ModelSpec = {
  className: 'Sequential',
  name: 'cnn',
  inputShape: [8, 8, 3],
  layers: [
    {
      className: 'Conv2D',
      name: 'conv',
      config: {
        filters: 4,
        kernel_size: [3, 3],
        strides: [1, 1],
        padding: 'same',
        data_format: 'channels_last',
        dilation_rate: [1, 1],
        groups: 1,
        activation: 'relu',
        use_bias: true,
        kernel_initializer: glorot,
        bias_initializer: zeros,
        kernel_regularizer: null,
        bias_regularizer: null,
        activity_regularizer: null,
        kernel_constraint: null,
        bias_constraint: null,
      },
      weights: [
        ['kernel', [3, 3, 3, 4]],
        ['bias', [4]],
      ],
    },
    { className: 'BatchNormalization', name: 'bn', config: bnConfig, weights: bnWeights(4) },
    { className: 'MaxPooling2D', name: 'pool', config: { pool_size: [2, 2], padding: 'valid', strides: [2, 2], data_format: 'channels_last' } },
    {
      className: 'DepthwiseConv2D',
      name: 'dw',
      config: { kernel_size: [3, 3], strides: [1, 1], padding: 'same', depth_multiplier: 1, data_format: 'channels_last', dilation_rate: [1, 1], activation: 'linear', use_bias: false, depthwise_initializer: glorot },
      weights: [['depthwise_kernel', [3, 3, 4, 1]]],
    },
    { className: 'Flatten', name: 'flat', config: { data_format: 'channels_last' } },
    { className: 'Dense', name: 'd1', config: dense(6, 'silu', { kernel_regularizer: { class_name: 'L2', config: { l2: 0.01 } } }), weights: [['kernel', [64, 6]], ['bias', [6]]] },
    { className: 'Dropout', name: 'drop', config: { rate: 0.5, noise_shape: null, seed: null } },
    { className: 'Dense', name: 'out', config: dense(3, 'softmax'), weights: [['kernel', [6, 3]], ['bias', [3]]] },
  ],
};

/** A functional model: two branches, Add, Concatenate with the input, and a nested Sequential head holding a BatchNormalization. */
const branches: ModelSpec = {
  className: 'Functional',
  name: 'branches',
  layers: [
    { className: 'InputLayer', name: 'inp', config: { shape: [6] } },
    { className: 'Dense', name: 'a', config: dense(4, 'relu'), weights: [['kernel', [6, 4]], ['bias', [4]]], inbound: ['inp'] },
    { className: 'Dense', name: 'b', config: dense(4, 'tanh'), weights: [['kernel', [6, 4]], ['bias', [4]]], inbound: ['inp'] },
    { className: 'Add', name: 'add', config: {}, inbound: ['a', 'b'] },
    { className: 'Concatenate', name: 'cat', config: { axis: -1 }, inbound: ['add', 'inp'] },
    {
      className: 'Sequential',
      name: 'head',
      inputShape: [10],
      inbound: ['cat'],
      layers: [
        { className: 'Dense', name: 'h1', config: dense(5, 'relu'), weights: [['kernel', [10, 5]], ['bias', [5]]] },
        { className: 'BatchNormalization', name: 'hbn', config: bnConfig, weights: bnWeights(5) },
        { className: 'Dense', name: 'h2', config: dense(2, 'softmax'), weights: [['kernel', [5, 2]], ['bias', [2]]] },
      ],
    },
  ],
  outputs: ['head'],
};

type Weights = ReturnType<typeof kerasWeights>;

function setWeights(layer: tf.layers.Layer, weights: Weights, names: string[]): void {
  layer.setWeights(
    names.map((n) => {
      const w = weights.get(`${layer.name}/${n}`)!;
      return tf.tensor(w.values, w.shape);
    }),
  );
}

/** The CNN built with tf.layers, independently of any config. */
function cnnReference(w: Weights): tf.LayersModel {
  const m = tf.sequential({ name: 'cnn_ref' });
  m.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }));
  m.add(tf.layers.batchNormalization({ axis: -1, momentum: 0.99, epsilon: 0.001, name: 'bn' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }));
  m.add(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, name: 'dw' }));
  m.add(tf.layers.flatten({ name: 'flat' }));
  m.add(tf.layers.dense({ units: 6, activation: 'swish', name: 'd1' }));
  m.add(tf.layers.dropout({ rate: 0.5, name: 'drop' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }));
  setWeights(m.getLayer('conv'), w, ['kernel', 'bias']);
  setWeights(m.getLayer('bn'), w, ['gamma', 'beta', 'moving_mean', 'moving_variance']);
  setWeights(m.getLayer('dw'), w, ['depthwise_kernel']);
  setWeights(m.getLayer('d1'), w, ['kernel', 'bias']);
  setWeights(m.getLayer('out'), w, ['kernel', 'bias']);
  return m;
}

function branchesReference(w: Weights): tf.LayersModel {
  const inp = tf.input({ shape: [6], name: 'inp_ref' });
  const a = tf.layers.dense({ units: 4, activation: 'relu', name: 'a' });
  const b = tf.layers.dense({ units: 4, activation: 'tanh', name: 'b' });
  const sum = tf.layers.add().apply([a.apply(inp) as tf.SymbolicTensor, b.apply(inp) as tf.SymbolicTensor]) as tf.SymbolicTensor;
  const cat = tf.layers.concatenate({ axis: -1 }).apply([sum, inp]) as tf.SymbolicTensor;
  const h1 = tf.layers.dense({ inputShape: [10], units: 5, activation: 'relu', name: 'h1' });
  const hbn = tf.layers.batchNormalization({ name: 'hbn' });
  const h2 = tf.layers.dense({ units: 2, activation: 'softmax', name: 'h2' });
  const head = tf.sequential({ name: 'head_ref', layers: [h1, hbn, h2] });
  const m = tf.model({ inputs: inp, outputs: head.apply(cat) as tf.SymbolicTensor });
  setWeights(a, w, ['kernel', 'bias']);
  setWeights(b, w, ['kernel', 'bias']);
  setWeights(h1, w, ['kernel', 'bias']);
  setWeights(hbn, w, ['gamma', 'beta', 'moving_mean', 'moving_variance']);
  setWeights(h2, w, ['kernel', 'bias']);
  return m;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-keras-'));
const file = (name: string) => path.join(dir, name);
const cnnWeights = kerasWeights(cnn, 3);
const branchesWeights = kerasWeights(branches, 5);
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('Keras files', () => {
  before(async () => {
    await setup();
    await writeKerasH5(file('cnn.h5'), cnn, cnnWeights);
    await writeKerasV3(file('cnn.keras'), cnn, cnnWeights);
    await writeKerasH5(file('cnn-k3.h5'), cnn, cnnWeights, { style: 'keras3', splitLayerNames: true });
    await writeKerasV3(file('cnn-win.keras'), cnn, cnnWeights, { backslashes: true, kerasVersion: '2.15.0' });
    await writeKerasV3(file('cnn-213.keras'), cnn, cnnWeights, { checkpointDependencies: true, kerasVersion: '2.13.1' });
    await writeKerasH5(file('branches.h5'), branches, branchesWeights);
    await writeKerasV3(file('branches.keras'), branches, branchesWeights);
  });

  const cases: [string, string, (w: Weights) => tf.LayersModel, Weights, number[]][] = [
    ['Keras 2 .h5', 'cnn.h5', cnnReference, cnnWeights, [2, 8, 8, 3]],
    ['Keras 3 .keras', 'cnn.keras', cnnReference, cnnWeights, [2, 8, 8, 3]],
    ['Keras 3 legacy .h5 (variable-length strings, split layer_names)', 'cnn-k3.h5', cnnReference, cnnWeights, [2, 8, 8, 3]],
    ['Keras 2.15 .keras saved on Windows (backslash group names)', 'cnn-win.keras', cnnReference, cnnWeights, [2, 8, 8, 3]],
    ['Keras 2.13 .keras (_layer_checkpoint_dependencies)', 'cnn-213.keras', cnnReference, cnnWeights, [2, 8, 8, 3]],
    ['Keras 2 .h5, functional with a nested Sequential', 'branches.h5', branchesReference, branchesWeights, [3, 6]],
    ['Keras 3 .keras, functional with a nested Sequential', 'branches.keras', branchesReference, branchesWeights, [3, 6]],
  ];
  for (const [what, name, reference, weights, inputShape] of cases) {
    it(`${what}: predictions match tf.layers with the same weights to 1e-4`, async () => {
      const loaded = await loadModel(file(name));
      const ref = reference(weights);
      try {
        const x = tf.randomUniform(inputShape, -1, 1, 'float32', 17);
        const d = maxAbsDiff(predict(loaded.layers!, x), predict(ref, x));
        assert.ok(d <= 1e-4, `max difference ${d}`);
        x.dispose();
        assert.equal(loaded.summary.totalParams, ref.countParams());
        assert.equal(loaded.summary.name, name.replace(/\.(h5|keras)$/, ''));
        assert.deepEqual(loaded.summary.warnings, []);
      } finally {
        ref.dispose();
        loaded.layers!.dispose();
      }
    });
  }

  it('lists the layers as Keras does (no InputLayer row for a Sequential; nested models expand)', async () => {
    const seq = await loadModel(file('cnn.keras'));
    assert.deepEqual(
      seq.summary.layers.map((l) => `${l.name}:${l.className}`),
      ['conv:Conv2D', 'bn:BatchNormalization', 'pool:MaxPooling2D', 'dw:DepthwiseConv2D', 'flat:Flatten', 'd1:Dense', 'drop:Dropout', 'out:Dense'],
    );
    assert.deepEqual(seq.summary.inputShape, [null, 8, 8, 3]);
    seq.layers!.dispose();
    const fn = await loadModel(file('branches.h5'));
    assert.deepEqual(
      fn.summary.layers.map((l) => l.path),
      ['inp', 'a', 'b', 'add', 'cat', 'head', 'head/h1', 'head/hbn', 'head/h2'],
    );
    fn.layers!.dispose();
  });

  it('keeps the regularizer and activation (Keras 3 spellings) in the topology it hands on', async () => {
    const loaded = await loadModel(file('cnn.keras'));
    const topo = JSON.stringify(loaded.files.artifacts.modelTopology);
    assert.match(topo, /"kernel_regularizer":\{"class_name":"L1L2","config":\{"l1":0,"l2":0\.01/);
    assert.match(topo, /"activation":"swish"/);
    assert.doesNotMatch(topo, /DTypePolicy|registered_name|"module"/);
    assert.equal(loaded.files.artifacts.generatedBy, 'Keras 3.3.3');
    loaded.layers!.dispose();
  });

  it('saves a loaded Keras model as a TF.js model that predicts the same, and names fine-tune output after the file', async () => {
    const loaded = await loadModel(file('cnn.h5'));
    const out = file('saved');
    await saveLayersModel(loaded.layers!, out);
    const again = await loadModel(path.join(out, 'model.json'));
    const x = tf.randomUniform([1, 8, 8, 3], 0, 1, 'float32', 4);
    assert.deepEqual(Array.from(predict(again.layers!, x)), Array.from(predict(loaded.layers!, x)));
    x.dispose();
    const target = defaultOutputPath(loaded.files.modelJsonPath, loaded.summary.name, new Date(2026, 0, 2, 3, 4));
    assert.equal(target, path.join(dir, 'cnn-finetuned-20260102-0304'));
    again.layers!.dispose();
    loaded.layers!.dispose();
  });

  it('names .keras weight groups as Keras does (to_snake_case of the class)', () => {
    assert.deepEqual(
      ['Conv2D', 'BatchNormalization', 'MaxPooling2D', 'DepthwiseConv2D', 'ReLU', 'PReLU', 'GlobalAveragePooling2D', 'InputLayer'].map(snakeCase),
      ['conv2d', 'batch_normalization', 'max_pooling2d', 'depthwise_conv2d', 're_lu', 'p_re_lu', 'global_average_pooling2d', 'input_layer'],
    );
  });

  it("an inspection without labels names the .h5 a labels.txt would sit next to, not a model.json", async () => {
    const loaded = await loadModel(file('cnn.h5'));
    const inspector = new Inspector();
    const r = await inspector.inspectImage(loaded, await readImageFile(fixture('images', 'rgb.png')), 'rgb.png', 'zeroOne');
    const note = r.notes?.find((n) => n.includes('no labels'));
    assert.match(note!, /next to cnn\.h5\).*A labels\.txt there, one label a line/);
    assert.doesNotMatch(note!, /model\.json/);
    inspector.dispose();
    disposeModel(loaded);
  });

  it('layer-lens summary prints the table of a .h5', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'summary', file('cnn.h5')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^cnn \(layers model\)/);
    assert.match(r.stdout, /^d1\s+Dense\s+\[\?, 6\]\s+390\s+yes$/m);
    assert.equal(r.stderr, '');
  });
});

describe('Keras files that cannot be opened', () => {
  before(setup);

  it('a layer whose weights are missing (.h5)', async () => {
    await writeKerasH5(file('missing.h5'), cnn, cnnWeights, { omit: ['d1'] });
    await rejectsWith(loadModel(file('missing.h5')), 'bad-weights', new RegExp(`^${escape(file('missing.h5'))}: the weights of layer "d1" are missing \\(no group "model_weights/d1" in the file\\)\\.$`));
  });

  it('a layer whose weights are missing (.keras)', async () => {
    await writeKerasV3(file('missing.keras'), cnn, cnnWeights, { omit: ['out'] });
    await rejectsWith(
      loadModel(file('missing.keras')),
      'bad-weights',
      new RegExp(`^${escape(file('missing.keras'))}: the weights of layer "out" are missing \\(no group "layers/dense_1/vars" in model\\.weights\\.h5\\)\\.$`),
    );
  });

  it('a weight of the wrong shape', async () => {
    await writeKerasH5(file('shape.h5'), cnn, cnnWeights, { reshape: { 'd1/kernel': [64, 5] } });
    await rejectsWith(loadModel(file('shape.h5')), 'bad-weights', /: weight "kernel" of layer "d1" has shape \[64, 5\] in the file, but the model needs \[64, 6\]\.$/);
    await writeKerasV3(file('shape.keras'), branches, branchesWeights, { reshape: { 'hbn/moving_variance': [4] } });
    await rejectsWith(loadModel(file('shape.keras')), 'bad-weights', /: weight "moving_variance" of layer "hbn" has shape \[4\] in the file, but the model needs \[5\]\.$/);
  });

  it('a Lambda layer is named', async () => {
    const spec: ModelSpec = { ...cnn, layers: [...cnn.layers.slice(0, 5), { className: 'Lambda', name: 'scale', config: { function: ['4wEAAAAAAAAA', null, null], function_type: 'lambda', arguments: {} } }, ...cnn.layers.slice(5)] };
    await writeKerasH5(file('lambda.h5'), spec, cnnWeights);
    await rejectsWith(loadModel(file('lambda.h5')), 'unsupported-layer', /^lambda\.h5 uses Lambda \(holds Python code, which cannot be loaded outside Python\); replace it with built-in layers before exporting\.$/);
  });

  it('a custom layer is named by its registered name', async () => {
    const custom: LayerSpec = { className: 'Dense', name: 'mine', module: 'my_pkg.layers', registeredName: 'my_pkg>Dense', config: dense(3, 'relu') };
    const spec: ModelSpec = { ...cnn, layers: [...cnn.layers.slice(0, 7), custom] };
    await writeKerasV3(file('custom.keras'), spec, cnnWeights);
    await rejectsWith(loadModel(file('custom.keras')), 'unknown-layer', /^custom\.keras uses layer class my_pkg>Dense, which tfjs-layers does not provide \(a custom layer\?\)/);
  });

  it('a raw Keras operation in a functional model', async () => {
    const spec: ModelSpec = {
      ...branches,
      layers: branches.layers.map((l) => (l.name === 'add' ? { className: 'Add', name: 'add', module: 'keras.src.ops.numpy', config: {}, inbound: ['a', 'b'] } : l)),
    };
    await writeKerasV3(file('op.keras'), spec, branchesWeights);
    await rejectsWith(
      loadModel(file('op.keras')),
      'unsupported-layer',
      new RegExp(
        `^${escape(file('op.keras'))}: "add" is the Keras operation Add \\(keras\\.src\\.ops\\.numpy\\) applied directly in a functional model, not a layer; tfjs-layers cannot rebuild raw operations\\. Use the matching layer from keras\\.layers before saving\\.$`,
      ),
    );
  });

  it('an activation tfjs lacks', async () => {
    const spec: ModelSpec = { ...cnn, layers: cnn.layers.map((l) => (l.name === 'd1' ? { ...l, config: dense(6, 'hard_silu') } : l)) };
    await writeKerasV3(file('act.keras'), spec, cnnWeights);
    await rejectsWith(loadModel(file('act.keras')), 'unsupported-layer', /: layer "d1" uses the activation "hard_silu", which tfjs-layers does not provide/);
  });

  it('an .h5 holding weights only', async () => {
    await writeKerasH5(file('weights.h5'), cnn, cnnWeights, { weightsOnly: true });
    await rejectsWith(loadModel(file('weights.h5')), 'not-a-model', /holds no model architecture \(no "model_config" attribute\): it was saved with save_weights, .* model\.save\("weights\.keras"\)/);
  });

  it('a config asking for far more weights than the file holds is refused before allocating', async () => {
    const config = kerasConfig({ ...cnn, layers: cnn.layers.map((l) => (l.name === 'd1' ? { ...l, config: dense(50_000_000, 'relu') } : l)) }, 3);
    await writeKerasV3(file('huge.keras'), cnn, cnnWeights, { config });
    await rejectsWith(loadModel(file('huge.keras')), 'bad-weights', /: layer "d1" asks for a weight of shape \[64, 50000000\] \(3200000000 values\), far more than the \d+ weight values the file holds; .*refused before allocating/);
  });

  it('a file that is neither HDF5 nor zip, and a damaged HDF5', async () => {
    fs.writeFileSync(file('text.keras'), 'hello');
    await rejectsWith(loadModel(file('text.keras')), 'keras-file', /text\.keras is a Keras file; Layer Lens could not read it: it is neither HDF5 \(\.h5\) nor a zip archive \(\.keras\)/);
    fs.writeFileSync(file('broken.h5'), Buffer.concat([Buffer.from('\x89HDF\r\n\x1a\n', 'latin1'), Buffer.alloc(100, 7)]));
    await rejectsWith(loadModel(file('broken.h5')), 'keras-file', /broken\.h5 is a Keras file; Layer Lens could not read it as HDF5 \([^)]+\)\. If Keras opens it, convert it with "tensorflowjs_converter --input_format keras broken\.h5 out\/"/);
  });

  describe('the .keras zip is hostile input', () => {
    it('an entry claiming more than the limit is refused before it is inflated (zip bomb)', async () => {
      const bomb = zipSync({ 'config.json': new Uint8Array(80 * 1024 * 1024).fill(32), 'model.weights.h5': new Uint8Array(8) }, { level: 9 });
      assert.ok(bomb.length < 1024 * 1024, `the bomb is ${bomb.length} bytes`);
      fs.writeFileSync(file('bomb.keras'), bomb);
      await rejectsWith(loadModel(file('bomb.keras')), 'too-large', /: config\.json claims 80 MB, more than the 64 MB Layer Lens accepts; refused before inflating \(a zip bomb\?\)\.$/);
    });

    it('an entry lying about its size inflates no further than it claims', async () => {
      const zip = Buffer.from(zipSync({ 'config.json': new Uint8Array(20 * 1024 * 1024).fill(32), 'model.weights.h5': new Uint8Array(8) }, { level: 9 }));
      // Claim 10 bytes in both headers.
      for (let at = zip.indexOf('PK\x03\x04'); at >= 0; at = zip.indexOf('PK\x03\x04', at + 4)) if (zip.toString('latin1', at + 30, at + 41) === 'config.json') zip.writeUInt32LE(10, at + 22);
      for (let at = zip.indexOf('PK\x01\x02'); at >= 0; at = zip.indexOf('PK\x01\x02', at + 4)) if (zip.toString('latin1', at + 46, at + 57) === 'config.json') zip.writeUInt32LE(10, at + 24);
      fs.writeFileSync(file('liar.keras'), zip);
      await rejectsWith(loadModel(file('liar.keras')), 'not-json', /config\.json in .*liar\.keras is not valid JSON/);
    });

    it('entry names are never paths: "../config.json" is not config.json, and nothing is written', async () => {
      await writeKerasV3(file('traversal.keras'), cnn, cnnWeights, { extra: { '../../escaped.json': strToU8('{}'), '/abs.json': strToU8('{}') } });
      const loaded = await loadModel(file('traversal.keras'));
      assert.equal(loaded.summary.layers.length, 8);
      loaded.layers!.dispose();
      assert.ok(!fs.existsSync(path.resolve(dir, '../../escaped.json')) && !fs.existsSync(path.resolve(dir, '..', 'escaped.json')));
      const onlyOutside = zipSync({ '../config.json': strToU8(JSON.stringify(kerasConfig(cnn, 3))), 'model.weights.h5': new Uint8Array(8) });
      fs.writeFileSync(file('outside.keras'), onlyOutside);
      await rejectsWith(loadModel(file('outside.keras')), 'not-a-model', /is a zip without config\.json at its root, so it is not a Keras model archive/);
    });

    it('two entries of the same name are refused', async () => {
      const zip = Buffer.from(zipSync({ 'config.json': strToU8('{}'), 'config.jsoX': strToU8('[]'), 'model.weights.h5': new Uint8Array(8) }));
      let at = zip.indexOf('config.jsoX');
      while (at >= 0) {
        zip.write('config.json', at, 'latin1');
        at = zip.indexOf('config.jsoX');
      }
      fs.writeFileSync(file('twice.keras'), zip);
      await rejectsWith(loadModel(file('twice.keras')), 'keras-file', /holds two entries named config\.json; refused/);
    });

    it('weights in the npz format are named', async () => {
      const zip = zipSync({ 'config.json': strToU8(JSON.stringify(kerasConfig(cnn, 3))), 'model.weights.npz': new Uint8Array(8) });
      fs.writeFileSync(file('npz.keras'), zip);
      await rejectsWith(loadModel(file('npz.keras')), 'not-a-model', /stores its weights as model\.weights\.npz, which Layer Lens does not read/);
    });
  });
});
