/**
 * Data-parallel training (src/engine/train/parallel.ts): each batch split
 * between the engine's thread and real helper threads (worker_threads, each
 * with a replica of the model), gradients combined in a fixed order.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { CancelledError } from '../../src/engine/errors';
import { loadModel } from '../../src/engine/model';
import { finetune, type FinetuneOptions } from '../../src/engine/train/finetune';
import { trainLoop, type Batch, type Trainable, type TrainData } from '../../src/engine/train/loop';
import { ParallelStepRunner, runningHelpers, shares } from '../../src/engine/train/parallel';
import { flatStatistics, statisticsOf } from '../../src/engine/train/replica';
import type { EpochMetrics, TrainProgress } from '../../src/protocol/train';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { fixture, makeStripesDataset, nestedModel, seedWeights, stripesClasses } from '../fixtures/models';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-parallel-'));
const at = (...p: string[]) => path.join(tmp, ...p);
let dataset = '';
let runs = 0;

function modelCopy(name: string): string {
  const dir = at('models', name);
  if (!fs.existsSync(dir)) fs.cpSync(fixture(name), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

/**
 * A fine-tune into a fresh folder; returns the result, the progress messages
 * and how many helper threads were running at the epoch ends.
 */
async function run(o: Partial<FinetuneOptions> & Pick<FinetuneOptions, 'modelJsonPath'>) {
  const progress: TrainProgress[] = [];
  const outDir = at('out', `run-${++runs}`);
  fs.mkdirSync(path.dirname(outDir), { recursive: true });
  const helpers: number[] = [];
  const onProgress = (p: TrainProgress) => {
    progress.push(p);
    if (p.type === 'epoch') helpers.push(runningHelpers());
  };
  const result = await finetune({ datasetDir: dataset, settings: {}, frozen: [], outDir, onProgress, ...o });
  return { result, progress, outDir, helpers };
}

const numbersOf = (ms: EpochMetrics[]) => ms.map(({ imagesPerSec: _i, seconds: _s, ...rest }) => rest);

/** Every weight of a saved model by name. */
async function weightsOf(modelJson: string): Promise<Map<string, Float32Array>> {
  const loaded = await loadModel(modelJson);
  const out = new Map<string, Float32Array>();
  for (const w of loaded.layers!.weights) out.set(w.originalName, w.read().dataSync() as Float32Array);
  loaded.layers!.dispose();
  return out;
}

/** A small CNN with a BatchNormalization and a Dropout that train, labelled with the dataset's classes. */
async function dropBnModel(): Promise<string> {
  const dir = at('models', 'drop-bn');
  if (fs.existsSync(dir)) return path.join(dir, 'model.json');
  const m = tf.sequential({ name: 'drop_bn' });
  m.add(tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 6, kernelSize: 3, activation: 'relu', name: 'conv1' }));
  m.add(tf.layers.batchNormalization({ name: 'bn1' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  m.add(tf.layers.dropout({ rate: 0.3, name: 'drop1' }));
  m.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, activation: 'relu', name: 'conv2' }));
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }));
  seedWeights(m, 5);
  fs.mkdirSync(dir, { recursive: true });
  await writeArtifacts(dir, await modelArtifacts(m), { extraFiles: { 'metadata.json': JSON.stringify({ labels: stripesClasses, normalization: 'zeroOne' }) } });
  m.dispose();
  return path.join(dir, 'model.json');
}

const settings = { epochs: 3, batchSize: 8, learningRate: 0.01, augment: { flip: { enabled: false } } };

before(async () => {
  await setup();
  dataset = makeStripesDataset(at('stripes'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('data-parallel training', () => {
  it('cuts a batch into nearly equal parts in order, larger ones first', () => {
    assert.deepEqual(shares(32, 2), [16, 16]);
    assert.deepEqual(shares(7, 2), [4, 3]);
    assert.deepEqual(shares(10, 3), [4, 3, 3]);
    assert.deepEqual(shares(1, 2), [1]);
  });

  it('reaches the loss of one thread, within float rounding, when no BatchNormalization trains', async () => {
    const model = modelCopy('tiny-cnn');
    // bn1 frozen: inference mode on every thread, so the halves' gradients add up to the batch's.
    const one = await run({ modelJsonPath: model, settings: { ...settings, threads: 1 }, frozen: ['bn1'] });
    const two = await run({ modelJsonPath: model, settings: { ...settings, threads: 2 }, frozen: ['bn1'] });
    assert.deepEqual(two.helpers, [1, 1, 1], 'one helper thread ran through the two-thread run');
    assert.deepEqual(one.helpers, [0, 0, 0]);
    assert.equal(runningHelpers(), 0, 'every helper thread has exited');
    const start = two.progress.find((p) => p.type === 'start');
    assert.equal(start?.type === 'start' && start.threads, 2);
    assert.equal(two.result.metrics.length, 3);
    two.result.metrics.forEach((m, i) => {
      const o = one.result.metrics[i];
      for (const k of ['loss', 'val_loss'] as const) {
        const rel = Math.abs(m[k]! - o[k]!) / Math.abs(o[k]!);
        assert.ok(rel < 1e-4, `epoch ${i + 1} ${k}: ${m[k]} on two threads, ${o[k]} on one`);
      }
      assert.equal(m.acc, o.acc);
    });
    // And the model learned: the loss fell.
    assert.ok(two.result.metrics[2].loss < two.result.metrics[0].loss);
  });

  it('repeats bitwise with the same seed (Dropout and a training BatchNormalization included), and holds frozen layers fixed', async () => {
    const model = await dropBnModel();
    const s = { ...settings, threads: 2, augment: { flip: { enabled: true } } };
    const a = await run({ modelJsonPath: model, settings: s, frozen: ['conv1'] });
    const b = await run({ modelJsonPath: model, settings: s, frozen: ['conv1'] });
    assert.deepEqual(a.helpers, [1, 1, 1]);
    assert.deepEqual(numbersOf(a.result.metrics), numbersOf(b.result.metrics));
    assert.deepEqual(fs.readFileSync(path.join(a.outDir, 'weights.bin')), fs.readFileSync(path.join(b.outDir, 'weights.bin')));
    const source = await weightsOf(model);
    const trained = await weightsOf(path.join(a.outDir, 'model.json'));
    for (const name of ['conv1/kernel', 'conv1/bias']) assert.deepEqual(trained.get(name), source.get(name), `${name} is frozen`);
    for (const name of ['conv2/kernel', 'head/kernel', 'bn1/gamma', 'bn1/moving_mean']) assert.notDeepEqual(trained.get(name), source.get(name), `${name} trains`);
    // A different thread count is another run (ghost BatchNormalization), but as repeatable.
    const one = await run({ modelJsonPath: model, settings: { ...s, threads: 1 }, frozen: ['conv1'] });
    assert.notDeepEqual(numbersOf(one.result.metrics), numbersOf(a.result.metrics));
    assert.equal(runningHelpers(), 0);
  });

  it('trains a new head on a wholly frozen nested backbone in inference mode on every thread', async () => {
    const dir = at('models', 'nested');
    fs.mkdirSync(dir, { recursive: true });
    const m = nestedModel();
    await writeArtifacts(dir, await modelArtifacts(m));
    m.dispose();
    const model = path.join(dir, 'model.json');
    const s = { ...settings, epochs: 2, threads: 2 };
    // Without the embedding cache, so that the backbone runs in the step (the cache trains on one thread).
    const two = await run({ modelJsonPath: model, settings: s, frozen: ['features'], embeddingCache: false });
    const one = await run({ modelJsonPath: model, settings: { ...s, threads: 1 }, frozen: ['features'], embeddingCache: false });
    assert.deepEqual(two.helpers, [1, 1]);
    two.result.metrics.forEach((m2, i) => assert.ok(Math.abs(m2.loss - one.result.metrics[i].loss) < 1e-5, `epoch ${i + 1}: ${m2.loss} vs ${one.result.metrics[i].loss}`));
    const source = await weightsOf(model);
    const trained = await weightsOf(path.join(two.outDir, 'model.json'));
    for (const [name, w] of source) if (trained.has(name)) assert.deepEqual(trained.get(name), w, `${name} is in the frozen backbone`);
    // With the cache, one thread, and the log says why.
    const cached = await run({ modelJsonPath: model, settings: s, frozen: ['features'] });
    const start = cached.progress.find((p) => p.type === 'start');
    assert.ok(start?.type === 'start' && start.threads === 1 && start.warnings.some((w) => /threads 2: the frozen backbone's outputs are cached/.test(w)));
    assert.equal(runningHelpers(), 0);
  });

  it('keeps the moving mean and variance of a training BatchNormalization as one model would', async () => {
    // One step at learning rate 0 from the same weights: only the statistics move.
    const build = () => {
      const m = tf.sequential();
      m.add(tf.layers.dense({ inputShape: [3], units: 4, kernelInitializer: 'ones', name: 'd' }));
      m.add(tf.layers.batchNormalization({ name: 'bn', momentum: 0.5 }));
      m.add(tf.layers.dense({ units: 2, kernelInitializer: 'ones', name: 'out' }));
      return m;
    };
    const xs = tf.tensor2d([[1, 2, 3], [0, 1, 0], [4, 0, 1], [2, 2, 2], [5, 1, 0], [0, 0, 1]]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 0, 1, 1, 0], 'int32'), 2).toFloat() as tf.Tensor2D;
    const stats: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const m = build();
      const net: Trainable = {
        forward: (x, training) => m.apply(x, { training }) as tf.Tensor,
        outputKind: 'logits',
        variables: m.trainableWeights.map((w) => w.read() as tf.Variable),
        state: m.weights,
      };
      const data: TrainData = {
        trainSize: 6,
        batchesPerEpoch: 1,
        train: async function* (): AsyncGenerator<Batch> {
          yield { xs: xs.clone(), ys: ys.clone(), size: 6 };
        },
      };
      const runner = threads > 1 ? await ParallelStepRunner.start({ threads, model: m, frozen: [], outputKind: 'logits', variables: m.trainableWeights, statistics: statisticsOf(m) }) : undefined;
      const optimizer = tf.train.sgd(0);
      try {
        await trainLoop(net, data, { epochs: 1, optimizer, learningRate: 0, monitor: 'loss', seed: 1, runner });
      } finally {
        await runner?.dispose();
      }
      stats.push(flatStatistics(statisticsOf(m)).map((w) => w.read().dataSync() as Float32Array));
      optimizer.dispose();
      m.dispose();
    }
    const [mean0, var0] = [new Float32Array(4), new Float32Array(4).fill(1)];
    const [mean1, var1] = stats[0];
    const [mean2, var2] = stats[1];
    assert.notDeepEqual(mean1, mean0, 'the step moved the mean');
    assert.notDeepEqual(var1, var0, 'and the variance');
    mean1.forEach((v, i) => assert.ok(Math.abs(v - mean2[i]) <= 1e-5 * Math.max(1, Math.abs(v)), `moving mean ${i}: ${mean2[i]} on two threads, ${v} on one`));
    // The variance too: the halves' variances plus the spread of their means around the batch's.
    var1.forEach((v, i) => assert.ok(Math.abs(v - var2[i]) <= 1e-5 * Math.max(1, Math.abs(v)), `moving variance ${i}: ${var2[i]} on two threads, ${v} on one`));
    tf.dispose([xs, ys]);
    assert.equal(runningHelpers(), 0);
  });

  it('cancels between batches and stops its helper; an error stops it too', async () => {
    const model = modelCopy('tiny-cnn');
    const ac = new AbortController();
    const outDir = at('out', 'cancelled');
    let helpersDuring = 0;
    await assert.rejects(
      finetune({
        modelJsonPath: model,
        datasetDir: dataset,
        settings: { ...settings, epochs: 5, threads: 2 },
        frozen: [],
        outDir,
        signal: ac.signal,
        batchProgressMs: 0,
        onProgress: (p) => {
          if (p.type === 'batch' && p.batch === 2) {
            helpersDuring = runningHelpers();
            ac.abort();
          }
        },
      }),
      (e) => e instanceof CancelledError,
    );
    assert.equal(helpersDuring, 1, 'one helper thread ran during training');
    assert.equal(runningHelpers(), 0, 'and it was stopped at the cancel');
    assert.equal(fs.existsSync(outDir), false);

    await assert.rejects(
      finetune({
        modelJsonPath: model,
        datasetDir: dataset,
        settings: { ...settings, threads: 2 },
        frozen: [],
        outDir: at('out', 'failed'),
        onProgress: (p) => {
          if (p.type === 'epoch') throw new Error('the progress sink broke');
        },
      }),
      /the progress sink broke/,
    );
    assert.equal(runningHelpers(), 0, 'stopped after an error');
  });

  const cores = os.availableParallelism();
  it('more threads than the machine has cores are clamped to the cores, with a note', { skip: cores >= 8 && 'this machine has 8 or more cores' }, () => {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'finetune', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    const r = cli(modelCopy('tiny-cnn'), dataset, '--epochs', '1', '--batch-size', '8', '--threads', String(cores + 1), '--out', at('cli-clamped'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`threads ${cores + 1}: this machine has ${cores} cores?, so training uses ${cores} threads?\\.`));
    assert.match(r.stdout, cores > 1 ? new RegExp(`; ${cores} threads$`, 'm') : /; adam lr 0\.001$/m);
  });

  it('layer-lens finetune --threads 2 trains on two threads; --threads 9 is refused', () => {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'finetune', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    const r = cli(modelCopy('tiny-cnn'), dataset, '--epochs', '1', '--batch-size', '8', '--threads', '2', '--out', at('cli-out'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Data: .*; adam lr 0\.001; 2 threads$/m);
    assert.match(r.stdout, /^Epoch 1\/1 /m);
    const bad = cli('m.json', 'data', '--threads', '9');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--threads 9: must be at most 8\./);
  });
});
