/**
 * The wasm kernels in use: convPadded, their registration, and training a
 * small CNN on wasm against cpu (see kernels.test.ts for each gradient).
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/engine/backend';
import { registerWasmTrainingKernels } from '../../src/engine/kernels';
import { convPadded } from '../../src/engine/kernels/kernelUtil';
import { type Backend, randomArray, relError, assertClose } from './kernelHelpers';

before(async () => {
  const info = await initBackend({ prefer: 'wasm' });
  assert.equal(info.name, 'wasm', `wasm backend did not initialise: ${info.notes.join('; ')}`);
});

describe('convPadded', () => {
  it('treats the input as zero beyond its edges, so cropping past it yields zeros of the right shape', async () => {
    await tf.setBackend('wasm');
    const [crop, full] = tf.tidy(() => {
      const x = tf.ones<tf.Rank.R4>([1, 3, 3, 2]);
      const f = tf.ones<tf.Rank.R4>([1, 1, 2, 4]);
      // Rows 5 and 6 of the zero-extended input: nothing of x is left.
      const cropped = convPadded('conv2d', x, f, [1, 1], [1, 1], -5, 4, 0, 0);
      // Cropping one row on each side keeps the middle row of x.
      const middle = convPadded('conv2d', x, f, [1, 1], [1, 1], -1, -1, 0, 0);
      return [cropped, middle];
    });
    assert.deepEqual(crop.shape, [1, 2, 3, 4]);
    assert.deepEqual(Array.from(crop.dataSync()), new Array(24).fill(0));
    assert.deepEqual(full.shape, [1, 1, 3, 4]);
    assert.deepEqual(Array.from(full.dataSync()), new Array(12).fill(2));
    tf.dispose([crop, full]);
  });
});

describe('registration', () => {
  it('is idempotent', () => {
    registerWasmTrainingKernels();
    registerWasmTrainingKernels();
    for (const name of [tf.Conv2DBackpropFilter, tf.DepthwiseConv2dNativeBackpropFilter,
      tf.DepthwiseConv2dNativeBackpropInput, tf.Conv2DBackpropInput, tf.MaxPoolGrad, tf.AvgPoolGrad, tf.GatherV2, tf.Sum]) {
      assert.ok(tf.getKernel(name, 'wasm'), `${name} is registered for wasm`);
    }
  });

  it('kernels leave no intermediate tensors behind (engine leak check)', async () => {
    await tf.setBackend('wasm');
    // IS_TEST makes the engine compare data ids before and after each kernel.
    const wasTest = tf.env().getBool('IS_TEST');
    tf.env().set('IS_TEST', true);
    try {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const x = tf.randomNormal<tf.Rank.R4>([2, 8, 8, 3]);
        const f = tf.randomNormal<tf.Rank.R4>([3, 3, 3, 2]);
        const dw = tf.randomNormal<tf.Rank.R4>([3, 3, 3, 2]);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')))([x, f]);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')))([x, dw]);
        tf.grad((a: tf.Tensor) => tf.sum(tf.maxPool(a as tf.Tensor4D, 2, 2, 'valid')))(x);
        tf.grad((a: tf.Tensor) => tf.sum(tf.avgPool(a as tf.Tensor4D, 3, 1, 'same')))(x);
        tf.gather(x, tf.tensor1d([1, 0], 'int32'));
        tf.sum(x, [0, 1, 2]);
      });
      assert.equal(tf.memory().numTensors, before);
    } finally {
      tf.env().set('IS_TEST', wasTest);
    }
  });
});

/** The CNN of scripts/benchTrain.ts and /work/shared/bench/torch_small_cnn.py. */
function benchmarkCnn(): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [64, 64, 3], filters: 16, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.globalAveragePooling2d({}));
  model.add(tf.layers.dense({ units: 10 }));
  model.compile({
    optimizer: tf.train.adam(1e-3),
    loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred),
  });
  return model;
}

describe('training on wasm', () => {
  it('model.fit of the benchmark CNN changes every weight and leaks no tensors across steps', async () => {
    await tf.setBackend('wasm');
    const model = benchmarkCnn();
    const xs = tf.tensor4d(randomArray(8 * 64 * 64 * 3, 7), [8, 64, 64, 3]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32'), 10);
    const initial = model.getWeights().map((w) => w.dataSync().slice());

    const counts: number[] = [];
    for (let epoch = 0; epoch < 4; ++epoch) {
      const history = await model.fit(xs, ys, { batchSize: 4, epochs: 1, shuffle: false, verbose: 0 });
      assert.ok(Number.isFinite(history.history.loss[0] as number), 'loss is finite');
      counts.push(tf.memory().numTensors);
    }
    // After the first epoch (optimizer slots are created lazily) the count is flat.
    assert.deepEqual(counts.slice(1), [counts[1], counts[1], counts[1]], `tensor counts per epoch: ${counts}`);

    model.getWeights().forEach((w, i) => {
      assert.ok(relError(w.dataSync(), initial[i]) > 0, `weight ${model.weights[i].name} changed`);
    });
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('one training step gives the same gradients on wasm as on cpu', async () => {
    const xv = randomArray(4 * 16 * 16 * 3, 8);
    const labels = [0, 1, 2, 3];
    const grads = async (backend: Backend): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      // Same seed, same initial weights on both backends.
      const model = smallCnnSeeded(16);
      const result = tf.tidy(() => {
        const xs = tf.tensor4d(xv, [4, 16, 16, 3]);
        const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), 4);
        const { grads: g } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(ys, model.predict(xs) as tf.Tensor) as tf.Scalar);
        return model.trainableWeights.map((w) => g[w.originalName].dataSync() as Float32Array);
      });
      model.dispose();
      return result;
    };
    const cpu = await grads('cpu');
    const wasm = await grads('wasm');
    cpu.forEach((g, i) => assertClose(wasm[i], g, `gradient ${i}`));
  });
});

/** smallCnn with deterministic initialisers, for cross-backend comparison. */
function smallCnnSeeded(size: number): tf.Sequential {
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [size, size, 3], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: init(1) }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu', depthwiseInitializer: init(2) }));
  model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(3) }));
  model.add(tf.layers.globalAveragePooling2d({}));
  model.add(tf.layers.dense({ units: 4, kernelInitializer: init(4) }));
  return model;
}
