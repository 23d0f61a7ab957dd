/**
 * Freezing, Keras-style: frozen weights (BatchNormalization's moving
 * statistics included) stay bit-identical through `fit`, a frozen BN runs in
 * inference mode, changes after compile take effect, and nested models freeze
 * as a whole or in part. Each trap is also shown to bite without the engine's
 * fix, so that these tests prove the fix matters. Runs on wasm (the backend we
 * ship), whose conv and depthwise gradients come from src/engine/kernels.
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { currentBackend } from '../../src/engine/backend';
import { layerRows, loadModel, walkLayers } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import {
  applyFreezePlan,
  containerState,
  freezeAllBatchNorm,
  freezeUpTo,
  frozenPaths,
  hasFrozenBatchNormFix,
  normalizePlan,
  recompile,
  setFrozen,
  toggle,
  trainableCounts,
  unfreezeAll,
} from '../../src/engine/train/freeze';
import { trainableUnder } from '../../src/protocol/freezePlan';
import type { LayerRow } from '../../src/protocol/model';
import { fixture, nestedModel, seedWeights } from '../fixtures/models';
import { setup } from './helpers';

/** conv → BN → relu blocks, so that frozen BNs sit both after frozen and after trainable convs. */
function bnCnn(seed = 11): tf.Sequential {
  const m = tf.sequential({ name: 'bn_cnn' });
  m.add(tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 6, kernelSize: 3, padding: 'same', name: 'conv_a' }));
  m.add(tf.layers.batchNormalization({ name: 'bn_a' }));
  m.add(tf.layers.activation({ activation: 'relu', name: 'relu_a' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool_a' }));
  m.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'conv_b' }));
  m.add(tf.layers.batchNormalization({ name: 'bn_b' }));
  m.add(tf.layers.activation({ activation: 'relu', name: 'relu_b' }));
  m.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'conv_c' }));
  m.add(tf.layers.batchNormalization({ name: 'bn_c' }));
  m.add(tf.layers.activation({ activation: 'relu', name: 'relu_c' }));
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }));
  seedWeights(m, seed);
  return m;
}

/** Half of bnCnn: the first block, and bn_b behind the trainable conv_b. */
const cnnPlan = ['conv_a', 'bn_a', 'relu_a', 'pool_a', 'bn_b', 'relu_b'];

/** Seeded images in [0, 1] and one-hot labels. Their statistics are far from the seeded moving ones, so BN mode shows. */
function data(n: number, classes: number, seed = 3): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const rng = new Rng(seed);
  const x = tf.tensor4d(Float32Array.from({ length: n * 16 * 16 * 3 }, () => rng.next()), [n, 16, 16, 3]);
  const labels = Int32Array.from({ length: n }, () => rng.int(classes));
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), classes) as tf.Tensor2D;
  return { x, y };
}

/** Every weight of every leaf layer, as raw bytes, keyed by layer path and weight name. */
function snapshot(model: tf.LayersModel): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const { path, layer } of walkLayers(model)) {
    if (layer instanceof tf.LayersModel) continue;
    for (const w of layer.weights) {
      const v = w.read().dataSync() as Float32Array;
      out.set(`${path}:${w.originalName.slice(w.originalName.lastIndexOf('/') + 1)}`, Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)));
    }
  }
  return out;
}

const leaf = (key: string) => key.slice(0, key.lastIndexOf(':'));

/** Asserts: every weight of a frozen layer bit-identical; every trainable layer's trainable weights changed. */
function assertFrozenHeld(model: tf.LayersModel, plan: string[], before: Map<string, Buffer>, after: Map<string, Buffer>): void {
  const fz = frozenPaths(layerRows(model), plan);
  let held = 0;
  let moved = 0;
  for (const [key, b] of before) {
    const a = after.get(key)!;
    if (fz.has(leaf(key))) {
      assert.ok(a.equals(b), `frozen weight ${key} changed`);
      held++;
    } else if (!/moving_(mean|variance)/.test(key)) {
      assert.ok(!a.equals(b), `trainable weight ${key} did not change`);
      moved++;
    }
  }
  assert.ok(held > 0 && moved > 0, `held ${held}, moved ${moved}`);
}

async function train(model: tf.LayersModel, epochs = 3): Promise<number[]> {
  const classes = model.outputs[0].shape[1] as number;
  const { x, y } = data(16, classes);
  const losses: number[] = [];
  await model.fit(x, y, { epochs, batchSize: 4, shuffle: false, verbose: 0, callbacks: { onBatchEnd: async (_b, logs) => void losses.push(logs?.['loss'] ?? NaN) } });
  x.dispose();
  y.dispose();
  return losses;
}

const compileArgs = (): tf.ModelCompileArgs => ({ optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });

describe('freeze plans from the layer table (no tfjs)', () => {
  before(setup);
  let rows: LayerRow[];
  before(() => {
    const m = nestedModel();
    rows = layerRows(m);
    m.dispose();
  });

  it('freezing a nested model freezes everything inside it', () => {
    const fz = frozenPaths(rows, ['features']);
    assert.deepEqual(
      [...fz],
      ['features', 'features/backbone', 'features/backbone/input_1', 'features/backbone/Conv1', 'features/backbone/bn_Conv1', 'features/backbone/Conv1_relu', 'features/backbone/dw1', 'features/backbone/gap'],
    );
    assert.equal(containerState(rows, ['features'], 'features/backbone/dw1'), 'frozen');
    assert.equal(containerState(rows, ['features'], 'head_seq'), 'trainable');
  });

  it('unchecking a layer inside a frozen model leaves its siblings frozen and the models partial; checking it again restores the plan', () => {
    const plan = toggle(['features'], 'features/backbone/dw1', rows);
    assert.deepEqual(plan, [
      'features/backbone/input_1',
      'features/backbone/Conv1',
      'features/backbone/bn_Conv1',
      'features/backbone/Conv1_relu',
      'features/backbone/gap',
    ]);
    assert.equal(containerState(rows, plan, 'features'), 'partial');
    assert.equal(containerState(rows, plan, 'features/backbone'), 'partial');
    assert.equal(containerState(rows, plan, 'features/backbone/dw1'), 'trainable');
    assert.deepEqual(toggle(plan, 'features/backbone/dw1', rows), ['features']);
    assert.deepEqual(toggle(plan, 'features', rows), ['features'], 'checking a partial model freezes it whole');
    assert.deepEqual(toggle(['features'], 'features', rows), []);
  });

  it('a nested model whose layers are all frozen shows frozen and is written as one path', () => {
    const each = ['features/backbone/Conv1', 'features/backbone/bn_Conv1', 'features/backbone/Conv1_relu', 'features/backbone/dw1', 'features/backbone/gap'];
    assert.equal(containerState(rows, each, 'features/backbone'), 'frozen', 'the weightless input layer does not count');
    assert.deepEqual(normalizePlan(rows, [...each, 'head_seq/dense_2', 'head_seq/dense_2', 'nope']), ['features', 'head_seq/dense_2']);
  });

  it('freeze up to a layer: earlier layers, and inside nested models only the layers before it', () => {
    assert.deepEqual(freezeUpTo(rows, 'features/backbone/bn_Conv1'), ['features/backbone/input_1', 'features/backbone/Conv1', 'features/backbone/bn_Conv1']);
    assert.deepEqual(freezeUpTo(rows, 'head_seq/dense_1'), ['features', 'head_seq/dense_1']);
    assert.deepEqual(freezeUpTo(rows, 'head_seq/dense_2'), ['features', 'head_seq']);
    assert.deepEqual(freezeUpTo(rows, 'features'), ['features']);
    assert.throws(() => freezeUpTo(rows, 'nope'), /"nope" is not a layer of this model/);
  });

  it('freeze all BatchNorm layers adds the nested ones to the plan, and unknown entries survive edits', () => {
    assert.deepEqual(freezeAllBatchNorm(rows), ['features/backbone/bn_Conv1']);
    assert.deepEqual(freezeAllBatchNorm(rows, ['head_seq', 'gone/layer']), ['features/backbone/bn_Conv1', 'head_seq', 'gone/layer']);
    assert.deepEqual(setFrozen(['gone/layer'], 'head_seq/dense_1', true, rows), ['head_seq/dense_1', 'gone/layer']);
  });

  it('counts trainable params like tfjs does once the plan is applied, BN moving statistics never counted', () => {
    const plans = [[], ['features'], ['features/backbone/bn_Conv1'], ['head_seq/dense_1', 'features/backbone/Conv1'], ['features', 'head_seq']];
    for (const plan of plans) {
      const m = nestedModel();
      const r = applyFreezePlan(m, plan);
      const c = trainableCounts(rows, plan);
      assert.equal(c.trainable, r.trainableParams, `plan ${JSON.stringify(plan)}`);
      assert.equal(c.total, r.totalParams);
      assert.equal(r.trainableParams + r.frozenParams + 8, r.totalParams, 'the 8 moving statistics of bn_Conv1 are neither');
      m.dispose();
    }
    assert.deepEqual(trainableCounts(rows, ['features', 'head_seq']), { trainable: 0, total: 197 });
  });

  it('says per row what trains under the plan: nothing for a frozen layer, the trainable layers inside a nested model', () => {
    const dense1 = rows.find((r) => r.path === 'head_seq/dense_1')!;
    assert.equal(trainableUnder(rows, [], 'head_seq/dense_1'), dense1.params);
    assert.equal(trainableUnder(rows, ['head_seq/dense_1'], 'head_seq/dense_1'), 0, 'a frozen layer trains nothing, whatever its saved flag');
    assert.equal(trainableUnder(rows, ['head_seq'], 'head_seq/dense_1'), 0, 'frozen through its nested model');
    assert.equal(trainableUnder(rows, [], 'features/backbone/bn_Conv1'), 8, 'BatchNormalization: gamma and beta, never the moving statistics');
    const head = trainableCounts(rows, ['features']).trainable;
    assert.equal(trainableUnder(rows, ['features'], 'head_seq'), head);
    assert.equal(trainableUnder(rows, ['head_seq/dense_1'], 'head_seq'), head - dense1.params, 'a partly frozen nested model counts only what trains');
    assert.equal(trainableUnder(rows, [], 'nope'), 0);
  });

  it('counts a layer that was saved frozen by its weights, not by its current flag', () => {
    const m = nestedModel();
    applyFreezePlan(m, ['features']);
    const frozenRows = layerRows(m);
    assert.equal(frozenRows.find((r) => r.name === 'bn_Conv1')!.trainableParams, 0);
    assert.deepEqual(trainableCounts(frozenRows, []), trainableCounts(rows, []));
    m.dispose();
  });
});

/** The gradients wasm lacks, supplied by src/engine/kernels (registered by initBackend). */
const trainingKernels = [tf.Conv2DBackpropFilter, tf.DepthwiseConv2dNativeBackpropFilter, tf.DepthwiseConv2dNativeBackpropInput];

describe('fine-tuning with frozen layers', () => {
  let missing: string[] = [];
  before(async () => {
    await setup();
    missing = trainingKernels.filter((k) => tf.getKernel(k, 'wasm') === undefined);
    // Only while src/engine/kernels is being written: train on cpu rather than
    // fail on a missing kernel that has nothing to do with freezing.
    if (missing.length > 0) await tf.setBackend('cpu');
  });
  after(async () => {
    if (currentBackend()?.name === 'wasm') await tf.setBackend('wasm');
  });

  it('runs on the wasm backend', (t) => {
    if (missing.length > 0) {
      t.skip(`wasm has no ${missing.join(', ')} yet (src/engine/kernels); these training tests ran on cpu`);
      return;
    }
    assert.equal(tf.getBackend(), 'wasm');
    assert.equal(currentBackend()?.name, 'wasm');
  });

  it('a CNN with half its layers frozen: every frozen weight, BN moving mean and variance included, is bit-identical after fit', async () => {
    const m = bnCnn();
    const r = applyFreezePlan(m, cnnPlan, compileArgs());
    assert.deepEqual(r.unknown, []);
    assert.equal(m.getLayer('bn_b').trainable, false);
    const before = snapshot(m);
    await train(m);
    const after = snapshot(m);
    assertFrozenHeld(m, cnnPlan, before, after);
    // The trainable BN still learns its statistics, as in Keras.
    assert.ok(!after.get('bn_c:moving_mean')!.equals(before.get('bn_c:moving_mean')!));
    m.dispose();
  });

  it('without the engine fix, tfjs changes a frozen BN\'s moving statistics (the trap the fix closes)', async () => {
    const m = bnCnn();
    for (const name of cnnPlan) m.getLayer(name).trainable = false;
    m.compile(compileArgs());
    assert.equal(hasFrozenBatchNormFix(m.getLayer('bn_a')), false);
    const before = snapshot(m);
    await train(m, 1);
    const after = snapshot(m);
    for (const key of ['bn_a:moving_mean', 'bn_a:moving_variance', 'bn_b:moving_mean', 'bn_b:moving_variance']) {
      assert.ok(!after.get(key)!.equals(before.get(key)!), `${key} was expected to drift in plain tfjs`);
    }
    // Its gamma and beta, and the frozen conv, are held: only the statistics leak.
    assert.ok(after.get('bn_a:gamma')!.equals(before.get('bn_a:gamma')!));
    assert.ok(after.get('conv_a:kernel')!.equals(before.get('conv_a:kernel')!));
    m.dispose();
  });

  it('a frozen BN normalises with its moving statistics during fit: the first batch loss equals the inference-mode loss', async () => {
    const { x, y } = data(8, 3, 21);
    const backbone = bnCnn()
      .layers.map((l) => l.name)
      .filter((n) => n !== 'head');
    const firstBatchLoss = async (m: tf.LayersModel): Promise<{ fit: number; inference: number }> => {
      const inference = ((await m.evaluate(x, y, { batchSize: 8 })) as tf.Scalar[])[0].dataSync()[0];
      let fit = NaN;
      await m.fit(x, y, { epochs: 1, batchSize: 8, shuffle: false, verbose: 0, callbacks: { onBatchEnd: async (_b, logs) => void (fit = logs?.['loss'] ?? NaN) } });
      return { fit, inference };
    };

    const fixed = bnCnn();
    applyFreezePlan(fixed, backbone, compileArgs());
    const a = await firstBatchLoss(fixed);
    assert.ok(Math.abs(a.fit - a.inference) <= 1e-6 * Math.abs(a.inference), `fit loss ${a.fit} vs inference loss ${a.inference}`);

    const plain = bnCnn();
    for (const name of backbone) plain.getLayer(name).trainable = false;
    plain.compile(compileArgs());
    const b = await firstBatchLoss(plain);
    assert.equal(b.inference, a.inference, 'same weights, same inference loss');
    assert.ok(Math.abs(b.fit - b.inference) > 1e-3, `plain tfjs used batch statistics: fit loss ${b.fit} vs inference ${b.inference}`);
    fixed.dispose();
    plain.dispose();
    x.dispose();
    y.dispose();
  });

  it('changes after compile take effect: freezing holds, and the optimizer is rebuilt (tfjs indexes Adam\'s moments by position)', async () => {
    const m = bnCnn();
    m.compile(compileArgs());
    await train(m, 1);
    applyFreezePlan(m, ['conv_a', 'bn_a']); // no compile args: the model's loss and metrics, a fresh Adam
    const before = snapshot(m);
    await train(m, 2);
    assertFrozenHeld(m, ['conv_a', 'bn_a'], before, snapshot(m));

    // The trap freshOptimizer avoids: the same Adam after the trainable list shrank.
    const trap = bnCnn();
    trap.compile(compileArgs());
    await train(trap, 1);
    for (const name of ['conv_a', 'bn_a']) trap.getLayer(name).trainable = false;
    trap.compile({ optimizer: trap.optimizer, loss: 'categoricalCrossentropy' });
    await assert.rejects(train(trap, 1), /broadcast/);
    m.dispose();
    trap.dispose();
  });

  it('unfreezing after compile: tfjs ignores it until the next compile, applyFreezePlan compiles', async () => {
    const m = bnCnn();
    m.getLayer('conv_a').trainable = false;
    m.compile(compileArgs());
    m.getLayer('conv_a').trainable = true;
    const b1 = snapshot(m);
    await train(m, 1);
    assert.ok(snapshot(m).get('conv_a:kernel')!.equals(b1.get('conv_a:kernel')!), 'plain tfjs was expected to keep training without conv_a');
    applyFreezePlan(m, []);
    const b2 = snapshot(m);
    await train(m, 1);
    assert.ok(!snapshot(m).get('conv_a:kernel')!.equals(b2.get('conv_a:kernel')!));
    m.dispose();
    const fresh = bnCnn();
    assert.throws(() => recompile(fresh), /model "bn_cnn" has not been compiled.*pass the optimizer and loss/);
    fresh.dispose();
  });

  it('freezing a nested model after compile: tfjs\'s setter misses layers two models deep until recompiled; applyFreezePlan does not', async () => {
    const m = nestedModel();
    m.compile(compileArgs());
    m.getLayer('features').trainable = false;
    const b1 = snapshot(m);
    await train(m, 1);
    assert.ok(!snapshot(m).get('features/backbone/Conv1:kernel')!.equals(b1.get('features/backbone/Conv1:kernel')!), 'plain tfjs was expected to keep training the inner layers');
    applyFreezePlan(m, ['features']);
    const b2 = snapshot(m);
    await train(m, 1);
    assertFrozenHeld(m, ['features'], b2, snapshot(m));
    m.dispose();
  });

  it('unfreezing puts BN back in training mode, and re-applying patches each BN once', async () => {
    const m = bnCnn();
    applyFreezePlan(m, cnnPlan, compileArgs());
    const call = m.getLayer('bn_a').call;
    applyFreezePlan(m, cnnPlan);
    assert.equal(m.getLayer('bn_a').call, call, 'the patch is not wrapped twice');
    const r = unfreezeAll(m);
    assert.equal(r.frozenParams, 0);
    const before = snapshot(m);
    await train(m, 1);
    assert.ok(!snapshot(m).get('bn_a:moving_mean')!.equals(before.get('bn_a:moving_mean')!));
    m.dispose();
  });

  it('the nested fixture: frozen layers inside nested models (BN included) are bit-identical, the others train', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const m = loaded.layers!;
    const plan = ['features/backbone/Conv1', 'features/backbone/bn_Conv1', 'head_seq/dense_1', 'no/such/layer'];
    const r = applyFreezePlan(m, plan, compileArgs());
    assert.deepEqual(r.unknown, ['no/such/layer']);
    const before = snapshot(m);
    await train(m);
    assertFrozenHeld(m, plan, before, snapshot(m));
    m.dispose();
  });

  it('the nested fixture: freezing the nested model by its path freezes its BN (inference mode) and every layer inside', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const m = loaded.layers!;
    const r = applyFreezePlan(m, ['features'], compileArgs());
    const bn = (m.getLayer('features') as tf.Sequential).getLayer('backbone') as tf.LayersModel;
    assert.equal(bn.getLayer('bn_Conv1').trainable, false, 'the flag reaches a BN two models deep');
    assert.equal(hasFrozenBatchNormFix(bn.getLayer('bn_Conv1')), true);
    assert.equal(r.trainableParams, 5 * 4 + 5 + 2 * 5 + 2, 'only the head trains');
    const before = snapshot(m);
    await train(m);
    const after = snapshot(m);
    assertFrozenHeld(m, ['features'], before, after);
    assert.ok(after.get('features/backbone/bn_Conv1:moving_variance')!.equals(before.get('features/backbone/bn_Conv1:moving_variance')!));
    m.dispose();
  });
});
