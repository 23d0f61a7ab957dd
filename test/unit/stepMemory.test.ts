/**
 * Memory of training and inference: the compiled step's estimate against
 * what it holds, micro-batches when a batch does not fit a budget (a real
 * fine-tune included), a clear refusal when not even one image fits, the
 * inspector refusing an input it cannot hold before allocating it, and a
 * real WebAssembly trap turned into one line with nothing printed by
 * emscripten.
 *
 * Run: node --import tsx --test test/unit/stepMemory.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../../src/engine/errors';
import { computeActivations } from '../../src/engine/inspect/activations';
import { loadModel, type LoadedModel } from '../../src/engine/model';
import { finetune } from '../../src/engine/train/finetune';
import { trainingStep } from '../../src/engine/train/step';
import { CompiledStep } from '../../src/engine/train/step/executor';
import { stepBytes, stepMemory } from '../../src/engine/train/step/memory';
import { planTrainingStep } from '../../src/engine/train/step/plan';
import type { TrainProgress, TrainStart } from '../../src/protocol/train';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-memory-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A small residual CNN at 48x48: big enough that activations dominate. */
function cnn(): tf.LayersModel {
  const input = tf.input({ shape: [48, 48, 3] });
  let x = tf.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', useBias: false }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({}).apply(x) as tf.SymbolicTensor;
  const a = tf.layers.reLU({ maxValue: 6 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false }).apply(a) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({}).apply(x) as tf.SymbolicTensor;
  x = tf.layers.add().apply([a, x]) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 32, kernelSize: 1 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

before(setup);

describe('training step memory', () => {
  it('the estimate covers what the step holds at its peak, without being several times too much', () => {
    const model = cnn();
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const planned = planTrainingStep(model, variables);
    assert.ok('plan' in planned);
    const step = new CompiledStep(planned.plan);
    const batch = 8;
    const xs = tf.randomUniform([batch, 48, 48, 3]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1], 'int32'), 3).toFloat() as tf.Tensor2D;
    const base = tf.memory().numBytes;
    let peak = 0;
    tf.tidy(() => {
      step.gradients(xs, ys, { outputKind: 'probabilities', seed: 1, profile: () => (peak = Math.max(peak, tf.memory().numBytes - base)) });
    });
    step.dispose();
    const m = stepMemory(planned.plan);
    const estimate = m.perImage * batch + m.fixed;
    assert.ok(peak <= stepBytes(m, batch), `measured peak ${peak} within the estimate with allowance ${stepBytes(m, batch)}`);
    assert.ok(estimate <= 3 * peak, `estimate ${estimate} not far above the measured ${peak}`);
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('splits a batch into micro-batches under a small memory limit, and says so', () => {
    const model = cnn();
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const whole = trainingStep(model, variables, { batchSize: 64, optimizer: 'adam' });
    assert.equal(whole.microBatch, undefined);
    assert.match(whole.line, /^Step: compiled: .*peak about \d+ MB at batch 64$/);
    const planned = planTrainingStep(model, variables);
    assert.ok('plan' in planned);
    const m = stepMemory(planned.plan);
    const limitMB = Math.ceil((tf.memory().numBytes + 2 * 64 * 48 * 48 * 3 * 4 + stepBytes(m, 20)) / 1048576);
    const split = trainingStep(model, variables, { batchSize: 64, optimizer: 'adam', memoryLimitMB: limitMB });
    assert.ok(split.microBatch && split.microBatch < 64 && split.microBatch >= 10, `micro-batch ${split.microBatch}`);
    assert.match(split.line, /micro-batches of up to \d+ with the gradients summed/);
    assert.match(split.line, /BatchNormalization layers that train normalise each micro-batch/);
    assert.match(split.line, /layerLens\.memoryLimitMB/);
    whole.compiled?.dispose();
    split.compiled?.dispose();
    model.dispose();
  });

  it('refuses a step where not even one image fits, naming what to do', () => {
    const model = cnn();
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const limitMB = Math.ceil(tf.memory().numBytes / 1048576) + 1;
    assert.throws(
      () => trainingStep(model, variables, { batchSize: 32, optimizer: 'adam', memoryLimitMB: limitMB }),
      (e: unknown) => e instanceof EngineError && e.code === 'out-of-memory' && /one image's training step needs about/.test(e.message) && /freeze more layers/.test(e.message),
    );
    model.dispose();
  });

  it('a fine-tune whose batch does not fit trains in micro-batches and says so in its first lines', async () => {
    const dataset = makeStripesDataset(path.join(tmp, 'stripes'), { perClass: 12 });
    const dir = path.join(tmp, 'models', 'tiny-cnn');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    const progress: TrainProgress[] = [];
    // The budget: room for the step at 10 of the 36 images, on top of what is held now and the model's own copy.
    const copy = (await loadModel(path.join(dir, 'model.json'))).layers!;
    const planned = planTrainingStep(copy, copy.trainableWeights.map((w) => w.read() as tf.Variable));
    assert.ok('plan' in planned);
    const m = stepMemory(planned.plan);
    const inputBytes = planned.plan.shapes[planned.plan.inputSlot].reduce((a, b) => a * b, 4);
    const limitMB = (tf.memory().numBytes + 2 * 36 * inputBytes + stepBytes(m, 10)) / 1048576;
    const result = await finetune({
      modelJsonPath: path.join(dir, 'model.json'),
      datasetDir: dataset,
      settings: { epochs: 1, batchSize: 4096, validationFraction: 0 },
      frozen: [],
      memoryLimitMB: limitMB,
      onProgress: (p) => progress.push(p),
    });
    const start = progress.find((p): p is TrainStart => p.type === 'start');
    assert.ok(start?.step, 'the start message says how the step runs');
    assert.match(start.step, /Step: compiled: .* each step runs as \d+ micro-batches of up to \d+/);
    assert.ok(result.metrics.length === 1 && Number.isFinite(result.metrics[0].loss));
    copy.dispose();
  });
});

describe('inference memory', () => {
  it('the inspector refuses a 4096x4096 input it cannot hold, before allocating, with a size that fits', () => {
    const input = tf.input({ shape: [4096, 4096, 3] });
    const x = tf.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same' }).apply(input) as tf.SymbolicTensor;
    const y = tf.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same' }).apply(x) as tf.SymbolicTensor;
    const out = tf.layers.globalAveragePooling2d({}).apply(y) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    const loaded = { layers: model, summary: { name: 'huge' } } as unknown as LoadedModel;
    const image = tf.zeros([1, 4096, 4096, 3]);
    const before = tf.memory().numTensors;
    assert.throws(
      () => computeActivations(loaded, image),
      (e: unknown) => e instanceof EngineError && e.code === 'out-of-memory' && /inspecting huge keeps every layer's output/.test(e.message) && /An input of about \d+x\d+ would fit/.test(e.message),
    );
    assert.equal(tf.memory().numTensors, before, 'nothing allocated');
    image.dispose();
    model.dispose();
  });
});

describe('a WebAssembly trap', () => {
  it('becomes one line that names what ran out; emscripten prints nothing', () => {
    const script = `
      const tf = require('@tensorflow/tfjs');
      const { initBackend } = require('./src/engine/backend');
      const { explainTrap } = require('./src/engine/wasmTrap');
      (async () => {
        await initBackend({ prefer: 'wasm' });
        const keep = [];
        try { for (let i = 0; i < 8; i++) keep.push(tf.fill([256, 1024, 1024], 1)); console.log('no trap'); }
        catch (e) { console.log('CAUGHT ' + explainTrap(e).message); }
      })();`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stdout}`);
    assert.match(lines[0], /^CAUGHT the compute engine ran out of memory .*WebAssembly's heap holds at most 4 GB/);
    assert.doesNotMatch(r.stderr + r.stdout, /Aborted\(/);
  });
});
