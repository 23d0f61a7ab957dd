/**
 * The compiled training step (src/engine/train/step) against tfjs's own
 * gradient tape on the cpu backend: the same model, weights and batch; the
 * loss, every trained weight's gradient and the BatchNormalization moving
 * statistics after the step must agree to 1e-4 (max |a - b| / max(1, max |b|)).
 *
 * The models cover every native node kind (Conv2D with and without bias,
 * 'same'/'valid', strided, dilated, non-square; a ZeroPadding2D folded into a
 * depthwise convolution; BatchNormalization trained and frozen, with ReLU,
 * ReLU6 or nothing after it, without center or scale; Add; global average
 * pooling; max and average pooling; Dense with ReLU and softmax; an
 * Activation sigmoid) and generic ones (Flatten, Dropout), frozen layers, logits and
 * probabilities.
 *
 * Run: node --import tsx --test test/unit/trainStep.test.ts
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/engine/backend';
import { simdKernels } from '../../src/engine/kernels/simd';
import { keepFrozenBatchNormInInference } from '../../src/engine/train/freeze';
import { lossOf } from '../../src/engine/train/loop';
import { CompiledStep } from '../../src/engine/train/step/executor';
import { planTrainingStep, type StepPlan } from '../../src/engine/train/step/plan';
import { Rng } from '../../src/engine/random';
import { assertClose } from './kernelHelpers';

const TOLERANCE = 1e-4;

function seeded(shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor {
  const r = new Rng(seed);
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = r.uniform(lo, hi);
  return tf.tensor(v, shape);
}

function oneHot(rows: number, classes: number, seed: number): tf.Tensor2D {
  const r = new Rng(seed);
  return tf.oneHot(tf.tensor1d(Array.from({ length: rows }, () => r.int(classes)), 'int32'), classes).toFloat() as tf.Tensor2D;
}

/** A MobileNetV2-like block stack: every native node kind. */
function mobileNetLike(expandBn: { center?: boolean; scale?: boolean } = {}): tf.LayersModel {
  const input = tf.input({ shape: [12, 12, 3] });
  let x = tf.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, name: 'stem' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'stem_bn' }).apply(x) as tf.SymbolicTensor;
  const branch = tf.layers.reLU({ maxValue: 6, name: 'stem_relu' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.zeroPadding2d({ padding: [[1, 1], [1, 1]] }).apply(branch) as tf.SymbolicTensor;
  x = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'valid', useBias: false, name: 'dw' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'dw_bn' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.reLU({ maxValue: 6 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 8, kernelSize: 1, useBias: false, name: 'project' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'project_bn' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.add().apply([branch, x]) as tf.SymbolicTensor;
  x = tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', useBias: true, name: 'dw2' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 12, kernelSize: 1, activation: 'relu', name: 'expand' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ ...expandBn, name: 'expand_bn' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.activation({ activation: 'relu' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dense({ units: 10, activation: 'relu', name: 'fc' }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

/** Non-square and strided convolutions, generic layers in between, logits out. */
function mixed(): tf.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ inputShape: [10, 9, 2], filters: 4, kernelSize: 3, padding: 'same', name: 'dil' }));
  m.add(tf.layers.batchNormalization({ name: 'dil_bn' }));
  m.add(tf.layers.activation({ activation: 'sigmoid' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 6, kernelSize: [2, 3], strides: [1, 2], padding: 'same', name: 'rect' }));
  m.add(tf.layers.reLU({}));
  m.add(tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 4, name: 'logits' }));
  return m;
}

function freeze(model: tf.LayersModel, names: string[]): void {
  for (const l of model.layers) if (names.includes(l.name)) l.trainable = false;
  for (const l of model.layers) keepFrozenBatchNormInInference(l);
}

interface Snapshot {
  weights: Float32Array[];
}

const snapshot = (m: tf.LayersModel): Snapshot => ({ weights: m.weights.map((w) => w.read().dataSync().slice() as Float32Array) });
const restore = (m: tf.LayersModel, s: Snapshot) => m.weights.forEach((w, i) => w.write(tf.tensor(s.weights[i], w.shape as number[])));

/** tfjs's tape on cpu: loss, gradients of `variables` and the weights after the (stat-updating) forward. */
async function reference(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor2D, kind: 'probabilities' | 'logits') {
  assert.ok(await tf.setBackend('cpu'));
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = tf.variableGrads(() => lossOf(model.apply(xs, { training: true }) as tf.Tensor, ys, kind), variables);
  const out = {
    loss: value.dataSync()[0],
    grads: variables.map((v) => grads[v.name].dataSync().slice() as Float32Array),
    weights: snapshot(model).weights,
  };
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

async function compiled(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor2D, kind: 'probabilities' | 'logits', microBatch?: number) {
  assert.ok(await tf.setBackend('wasm'));
  assert.ok(simdKernels(), 'the SIMD kernels are loaded');
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const planned = planTrainingStep(model, variables);
  assert.ok('plan' in planned, `planned: ${'reason' in planned ? planned.reason : ''}`);
  const step = new CompiledStep(planned.plan);
  try {
    const r = tf.tidy(() => {
      const g = step.gradients(xs, ys, { outputKind: kind, seed: 5, ...(microBatch ? { microBatch } : {}) });
      return { loss: g.loss.dataSync()[0], grads: g.grads.map((t) => t!.dataSync().slice() as Float32Array) };
    });
    return { ...r, weights: snapshot(model).weights, plan: planned.plan };
  } finally {
    step.dispose();
  }
}

async function compare(model: tf.LayersModel, batch: number, kind: 'probabilities' | 'logits', seed: number): Promise<StepPlan> {
  const inShape = model.inputs[0].shape.slice(1) as number[];
  const classes = model.outputs[0].shape[1] as number;
  const xs = seeded([batch, ...inShape], seed, 0, 2);
  const ys = oneHot(batch, classes, seed + 1);
  const before = snapshot(model);
  const ref = await reference(model, xs, ys, kind);
  restore(model, before);
  const got = await compiled(model, xs, ys, kind);
  assert.ok(Math.abs(got.loss - ref.loss) <= TOLERANCE * Math.max(1, Math.abs(ref.loss)), `loss ${got.loss} vs ${ref.loss}`);
  model.trainableWeights.forEach((w, i) => assertClose(got.grads[i], ref.grads[i], `gradient of ${w.name}`));
  model.weights.forEach((w, i) => assertClose(got.weights[i], ref.weights[i], `${w.name} after the step`));
  tf.dispose([xs, ys]);
  return got.plan;
}

before(async () => {
  const info = await initBackend({ prefer: 'wasm' });
  assert.equal(info.name, 'wasm', info.notes.join('; '));
  assert.ok(simdKernels(), `SIMD kernels: ${info.notes.join('; ')}`);
});

describe('compiled training step matches tfjs gradients on cpu', () => {
  it('MobileNetV2-like stack, every layer trained (probabilities)', async () => {
    const model = mobileNetLike();
    const plan = await compare(model, 5, 'probabilities', 1);
    const kinds = plan.nodes.map((n) => n.kind);
    for (const k of ['conv', 'depthwise', 'bn', 'add', 'gap', 'dense', 'clamp', 'activation']) assert.ok(kinds.includes(k as never), `plan has a ${k} node: ${plan.summary}`);
    assert.ok(!plan.summary.includes('ZeroPadding2D'), `paddings folded into the convolutions: ${plan.summary}`);
    assert.ok(plan.nodes.some((n) => n.kind === 'bn' && n.clamp), 'a BN fused with its ReLU6');
  });

  it('the same stack with the stem and BatchNormalizations frozen (inference mode)', async () => {
    const model = mobileNetLike();
    freeze(model, ['stem', 'stem_bn', 'project_bn', 'expand_bn']);
    const plan = await compare(model, 4, 'probabilities', 2);
    assert.equal(plan.nodes.filter((n) => n.kind === 'bn' && !n.training).length, 3);
  });

  it('rectangular and strided convolutions, generic layers, logits', async () => {
    const model = mixed();
    const plan = await compare(model, 3, 'logits', 3);
    assert.equal(plan.nodes.filter((n) => n.kind === 'pool').length, 2, plan.summary);
    assert.match(plan.summary, /generic Flatten/);
  });

  it('a frozen prefix keeps no activations and gets no gradient', async () => {
    const model = mobileNetLike();
    freeze(model, model.layers.slice(0, 8).map((l) => l.name));
    const plan = await compare(model, 4, 'probabilities', 4);
    assert.equal(plan.requiresGrad[plan.nodes[0].output], false);
  });
});

/**
 * Two things tfjs cannot differentiate at all, checked against an equivalent
 * model it can: a dilated convolution (tfjs: "dilation rates greater than 1
 * are not yet supported in gradients") against the undilated convolution
 * whose kernel has the zeros in between; a BatchNormalization without center
 * and scale (tfjs reads the missing weight) against one whose gamma is 1 and
 * beta 0, frozen.
 */
describe('compiled training step where tfjs has no gradient', () => {
  it('a dilated convolution equals the zero-interleaved one', async () => {
    const make = (dilated: boolean) => {
      const m = tf.sequential();
      m.add(tf.layers.conv2d({ inputShape: [9, 8, 2], filters: 3, kernelSize: dilated ? 3 : 5, dilationRate: dilated ? 2 : 1, padding: 'same', name: 'c' }));
      m.add(tf.layers.reLU({ maxValue: 6 }));
      m.add(tf.layers.globalAveragePooling2d({}));
      m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'd' }));
      return m;
    };
    assert.ok(await tf.setBackend('wasm'));
    const dil = make(true);
    const wide = make(false);
    const k3 = dil.layers[0].getWeights()[0].arraySync() as number[][][][];
    const k5 = Array.from({ length: 5 }, (_, i) => Array.from({ length: 5 }, (_, j) => (i % 2 === 0 && j % 2 === 0 ? k3[i / 2][j / 2] : k3[0][0].map((row) => row.map(() => 0)))));
    wide.layers[0].setWeights([tf.tensor4d(k5), dil.layers[0].getWeights()[1]]);
    wide.layers[3].setWeights(dil.layers[3].getWeights());
    const xs = seeded([3, 9, 8, 2], 21, 0, 2);
    const ys = oneHot(3, 3, 22);
    const ref = await reference(wide, xs, ys, 'probabilities');
    const got = await compiled(dil, xs, ys, 'probabilities');
    assert.ok(Math.abs(got.loss - ref.loss) <= TOLERANCE, `loss ${got.loss} vs ${ref.loss}`);
    const taps = new Float32Array(3 * 3 * 2 * 3);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let c = 0; c < 6; c++) taps[(i * 3 + j) * 6 + c] = ref.grads[0][((2 * i) * 5 + 2 * j) * 6 + c];
    assertClose(got.grads[0], taps, 'dilated kernel gradient');
    for (let i = 1; i < 4; i++) assertClose(got.grads[i], ref.grads[i], `gradient ${i}`);
    tf.dispose([xs, ys]);
  });

  it('a frozen BatchNormalization without center and scale equals one with gamma 1 and beta 0', async () => {
    assert.ok(await tf.setBackend('wasm'));
    const bare = mobileNetLike({ center: false, scale: false });
    const full = mobileNetLike();
    // Same weights layer by layer (names differ by the model's suffix).
    bare.layers.forEach((l, i) => { if (l.getWeights().length) full.layers[i].setWeights(l.name === 'expand_bn' ? [tf.ones(l.getWeights()[0].shape), tf.zeros(l.getWeights()[0].shape), ...l.getWeights()] : l.getWeights()); });
    freeze(bare, ['expand_bn']);
    freeze(full, ['expand_bn']);
    const xs = seeded([4, 12, 12, 3], 23, 0, 2);
    const ys = oneHot(4, 3, 24);
    const ref = await reference(full, xs, ys, 'probabilities');
    const got = await compiled(bare, xs, ys, 'probabilities');
    assert.ok(Math.abs(got.loss - ref.loss) <= TOLERANCE, `loss ${got.loss} vs ${ref.loss}`);
    bare.trainableWeights.forEach((w, i) => assertClose(got.grads[i], ref.grads[i], `gradient of ${w.name}`));
    tf.dispose([xs, ys]);
  });
});

describe('micro-batches', () => {
  it('give bitwise the gradients of the whole batch when no BatchNormalization trains', async () => {
    const model = mobileNetLike();
    freeze(model, model.layers.filter((l) => l.getClassName() === 'BatchNormalization').map((l) => l.name));
    const xs = seeded([6, 12, 12, 3], 7, 0, 1);
    const ys = oneHot(6, 3, 8);
    const before = snapshot(model);
    const whole = await compiled(model, xs, ys, 'probabilities');
    restore(model, before);
    const parts = await compiled(model, xs, ys, 'probabilities', 2);
    whole.grads.forEach((g, i) => assert.deepEqual(parts.grads[i], g, `gradient ${i} is bitwise the same`));
    assert.ok(Math.abs(parts.loss - whole.loss) < 1e-6);
    tf.dispose([xs, ys]);
  });

  it('update BatchNormalization moving statistics from the whole batch', async () => {
    const model = mobileNetLike();
    const xs = seeded([6, 12, 12, 3], 9, 0, 1);
    const ys = oneHot(6, 3, 10);
    const before = snapshot(model);
    const whole = await compiled(model, xs, ys, 'probabilities');
    restore(model, before);
    const parts = await compiled(model, xs, ys, 'probabilities', 3);
    // The first BN sees the model input unchanged by any earlier normalisation: its statistics agree.
    const i = model.weights.findIndex((w) => w.name.includes('stem_bn') && w.name.includes('moving_variance'));
    assertClose(parts.weights[i], whole.weights[i], 'stem_bn moving variance');
    tf.dispose([xs, ys]);
  });
});

describe('generic layers with randomness', () => {
  it('Dropout draws one mask per step: the same seed repeats, the gradient matches its own recomputation', async () => {
    const m = tf.sequential();
    m.add(tf.layers.dense({ inputShape: [6], units: 8, activation: 'relu' }));
    m.add(tf.layers.dropout({ rate: 0.5 }));
    m.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
    const xs = seeded([4, 6], 11);
    const ys = oneHot(4, 2, 12);
    const before = snapshot(m);
    const a = await compiled(m, xs, ys, 'probabilities');
    restore(m, before);
    const b = await compiled(m, xs, ys, 'probabilities');
    a.grads.forEach((g, i) => assert.deepEqual(b.grads[i], g));
    assert.ok(a.grads.some((g) => g.some((v) => v !== 0)));
    tf.dispose([xs, ys]);
  });
});
