import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { CancelledError } from '../../src/engine/errors';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { loadModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { finetune, type FinetuneOptions } from '../../src/engine/train/finetune';
import { findFeatureCut, planHead } from '../../src/engine/train/head';
import { learningRateAt, setLearningRate, trainLoop, withSeededRandom, type Batch, type TrainData } from '../../src/engine/train/loop';
import { formatEpochLine, formatProgress, metricsCsv, type EpochMetrics, type TrainProgress, type TrainStart } from '../../src/protocol/train';
import { fixture, makeStripesDataset, nestedModel, seedWeights, stripesClasses, tinyCnn } from '../fixtures/models';
import { rejectsWith, setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-finetune-'));
const at = (...p: string[]) => path.join(tmp, ...p);
let dataset = '';

/** Copies a fixture model into its own folder under tmp (results land next to it). */
function modelCopy(name: string, into: string): string {
  const dir = at(into, name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.cpSync(fixture(name), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) out[f] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return out;
}

/** Metrics without the wall-clock fields, which differ between any two runs. */
const numbersOf = (ms: EpochMetrics[]) => ms.map(({ imagesPerSec: _i, seconds: _s, ...rest }) => rest);

async function run(o: Partial<FinetuneOptions> & Pick<FinetuneOptions, 'modelJsonPath'>): Promise<{ result: Awaited<ReturnType<typeof finetune>>; progress: TrainProgress[] }> {
  const progress: TrainProgress[] = [];
  const result = await finetune({ datasetDir: dataset, settings: {}, frozen: [], onProgress: (p) => progress.push(p), ...o });
  return { result, progress };
}

/** A small CNN with Dropout in its trainable part and labels equal to the dataset's classes. */
async function dropoutModel(options: { l2?: number; name?: string } = {}): Promise<string> {
  const m = tf.sequential({ name: 'drop_cnn' });
  m.add(tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 6, kernelSize: 3, activation: 'relu', name: 'conv1' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  m.add(tf.layers.dropout({ rate: 0.3, name: 'drop1' }));
  m.add(tf.layers.conv2d({ filters: 8, kernelSize: 3, activation: 'relu', name: 'conv2' }));
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dropout({ rate: 0.2, name: 'drop2' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out', ...(options.l2 ? { kernelRegularizer: tf.regularizers.l2({ l2: options.l2 }) } : {}) }));
  seedWeights(m, 4);
  const dir = at('models', options.name ?? 'drop-cnn');
  fs.mkdirSync(dir, { recursive: true });
  await writeArtifacts(dir, await modelArtifacts(m), { extraFiles: { 'metadata.json': JSON.stringify({ labels: stripesClasses, normalization: 'zeroOne' }) } });
  m.dispose();
  return path.join(dir, 'model.json');
}

before(async () => {
  await setup();
  dataset = makeStripesDataset(at('stripes'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('fine-tune', () => {
  it('learns the dataset clearly better than chance and saves a loadable model with labels and metrics', async () => {
    const before = tf.memory().numTensors;
    const { result, progress } = await run({
      modelJsonPath: modelCopy('tiny-cnn', 'learn'),
      settings: { epochs: 10, batchSize: 8, learningRate: 0.01, augment: { flip: { enabled: false } } },
      // Keras-style frozen BatchNormalization: the random moving statistics stay, used in inference mode.
      frozen: ['bn1'],
      now: () => new Date(2026, 10, 27, 18, 42),
    });
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
    assert.equal(result.outputPath, at('learn', 'tiny-cnn-finetuned-20261127-1842'));
    const last = result.metrics[result.metrics.length - 1];
    assert.ok((last.val_acc ?? 0) >= 0.6, `val_acc ${last.val_acc} (chance is 0.33)`);
    assert.deepEqual(result.labels, stripesClasses);
    assert.equal(result.trainSize + result.valSize, 90);
    assert.equal(result.valSize, 18);

    const files = fs.readdirSync(result.outputPath).sort();
    assert.deepEqual(files, ['metadata.json', 'metrics.csv', 'metrics.json', 'model.json', 'weights.bin']);
    const meta = JSON.parse(fs.readFileSync(path.join(result.outputPath, 'metadata.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(meta['labels'], stripesClasses);
    assert.equal(meta['normalization'], 'zeroOne');
    assert.deepEqual(meta['imageSize'], [16, 16]);
    assert.equal(meta['sourceModel'], '../tiny-cnn/model.json');
    assert.equal((meta['settings'] as { epochs: number }).epochs, 10);
    const csv = fs.readFileSync(path.join(result.outputPath, 'metrics.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 11);
    assert.equal(csv[0], 'epoch,loss,acc,val_loss,val_acc,lr,images_per_sec,seconds');
    const reloaded = await loadModel(path.join(result.outputPath, 'model.json'));
    assert.deepEqual(reloaded.summary.labels, stripesClasses);
    assert.deepEqual(reloaded.summary.outputShape, [null, 3]);
    reloaded.layers?.dispose();

    const start = progress.find((p): p is TrainStart => p.type === 'start');
    assert.ok(start);
    assert.deepEqual(start.classes.map((c) => [c.name, c.images, c.train, c.val]), stripesClasses.map((c) => [c, 30, 24, 6]));
    assert.equal(start.head.replaced, true);
    assert.equal(start.head.cutLayer, 'gap');
    assert.deepEqual(start.frozen.paths, ['bn1']);
    const lines = progress.flatMap((p) => formatProgress(p));
    assert.match(lines[0], /^Fine-tune: 3 classes \(checker 30, horizontal 30, vertical 30 images\), val 20% seeded 7, augment none$/);
    assert.ok(lines.some((l) => /^Frozen: bn1 \(8 params\); training \d+ params$/.test(l)));
    assert.equal(progress.filter((p) => p.type === 'epoch').length, 10);
    assert.match(lines[lines.length - 1], /^Best val_loss \d\.\d{3} at epoch \d+.*\. Saved .*tiny-cnn-finetuned-20261127-1842\/$/);
  });

  it('gives identical metrics for two runs with the same seed (augmentation and Dropout included)', async () => {
    const modelJsonPath = await dropoutModel();
    const settings = {
      epochs: 2,
      batchSize: 16,
      learningRate: 0.01,
      seed: 3,
      augment: { flip: { enabled: true }, rotate: { enabled: true, degrees: 20 }, zoom: { enabled: true, amount: 0.2 }, brightness: { enabled: true, amount: 0.2 } },
    };
    const a = await run({ modelJsonPath, settings, outDir: at('same-a') });
    const b = await run({ modelJsonPath, settings, outDir: at('same-b') });
    assert.equal(a.result.embeddingCache, false);
    assert.deepEqual(numbersOf(b.result.metrics), numbersOf(a.result.metrics));
    assert.equal(fs.readFileSync(path.join(at('same-a'), 'weights.bin')).compare(fs.readFileSync(path.join(at('same-b'), 'weights.bin'))), 0, 'identical weights');
    const c = await run({ modelJsonPath, settings: { ...settings, seed: 4 }, outDir: at('same-c') });
    assert.notDeepEqual(numbersOf(c.result.metrics), numbersOf(a.result.metrics));
    // The head was kept (labels match) in the model's label order.
    const start = a.progress.find((p): p is TrainStart => p.type === 'start');
    assert.equal(start?.head.replaced, false);
  });

  it("adds the model's regularization losses to the loss, as Keras does", async () => {
    const settings = { epochs: 1, batchSize: 16, augment: { flip: { enabled: false } } };
    const plain = await run({ modelJsonPath: await dropoutModel({ name: 'plain' }), settings, outDir: at('reg-plain') });
    const l2 = await run({ modelJsonPath: await dropoutModel({ l2: 1, name: 'l2' }), settings, outDir: at('reg-l2') });
    const [a, b] = [plain.result.metrics[0], l2.result.metrics[0]];
    assert.ok(b.loss > a.loss + 0.05 && (b.val_loss ?? 0) > (a.val_loss ?? 0) + 0.05, `loss ${a.loss} -> ${b.loss}, val_loss ${a.val_loss} -> ${b.val_loss}`);
  });

  it('leaves no folder and an unchanged model when cancelled mid-run', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'cancel');
    const before = hashes(at('cancel'));
    const ac = new AbortController();
    let batches = 0;
    await rejectsWith(
      run({
        modelJsonPath,
        settings: { epochs: 50, batchSize: 4 },
        signal: ac.signal,
        batchProgressMs: 0,
        onProgress: (p) => {
          if (p.type === 'batch' && ++batches === 5) ac.abort();
        },
      }),
      'cancelled',
      /Fine-tuning was cancelled/,
    );
    assert.equal(batches, 5, 'stopped at the next batch');
    assert.deepEqual(fs.readdirSync(at('cancel')), ['tiny-cnn']);
    assert.deepEqual(hashes(at('cancel')), before);
  });

  it('leaves no folder when cancelled after the last epoch, or when something fails', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'late');
    const before = hashes(at('late'));
    const ac = new AbortController();
    const late = run({
      modelJsonPath,
      settings: { epochs: 2 },
      signal: ac.signal,
      onProgress: (p) => {
        if (p.type === 'epoch' && p.metrics.epoch === 2) ac.abort();
      },
    });
    await assert.rejects(late, CancelledError);
    const failing = run({
      modelJsonPath,
      settings: { epochs: 2 },
      onProgress: (p) => {
        if (p.type === 'epoch') throw new Error('the host went away');
      },
    });
    await assert.rejects(failing, /the host went away/);
    assert.deepEqual(fs.readdirSync(at('late')), ['tiny-cnn']);
    assert.deepEqual(hashes(at('late')), before);
  });

  it('trains only the head on cached backbone outputs when the backbone is frozen, with the same results', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'cache');
    const frozen = ['conv1', 'bn1', 'pool1', 'conv2', 'gap'];
    const settings = { epochs: 3, batchSize: 8, learningRate: 0.05, augment: { flip: { enabled: false } } };
    const cached = await run({ modelJsonPath, settings, frozen, outDir: at('cache', 'with') });
    const direct = await run({ modelJsonPath, settings, frozen, outDir: at('cache', 'without'), embeddingCache: false });
    assert.equal(cached.result.embeddingCache, true);
    assert.equal(direct.result.embeddingCache, false);
    const a = numbersOf(cached.result.metrics);
    const b = numbersOf(direct.result.metrics);
    a.forEach((row, i) => {
      for (const k of ['loss', 'acc', 'val_loss', 'val_acc'] as const) assert.ok(Math.abs((row[k] ?? 0) - (b[i][k] ?? 0)) < 1e-4, `epoch ${i + 1} ${k}: ${row[k]} vs ${b[i][k]}`);
    });
    // Augmentation changes the backbone's input every epoch: no cache then.
    const aug = await run({ modelJsonPath, settings: { ...settings, epochs: 1, augment: { flip: { enabled: true } } }, frozen, outDir: at('cache', 'aug') });
    assert.equal(aug.result.embeddingCache, false);
  });

  it('cuts a Teachable Machine-style model at its nested backbone and keeps its preprocessing', async () => {
    const { result, progress } = await run({
      modelJsonPath: modelCopy('nested', 'tm'),
      settings: { epochs: 2, batchSize: 16, augment: { flip: { enabled: false } } },
      frozen: ['features'],
    });
    const start = progress.find((p): p is TrainStart => p.type === 'start');
    assert.equal(start?.head.cutLayer, 'features');
    assert.equal(start?.normalization, 'minusOneOne');
    assert.equal(result.embeddingCache, true);
    const reloaded = await loadModel(path.join(result.outputPath, 'model.json'));
    assert.equal(reloaded.summary.normalization, 'minusOneOne');
    assert.deepEqual(reloaded.summary.labels, stripesClasses);
    assert.deepEqual(reloaded.summary.layers.filter((r) => r.depth === 0).map((r) => r.name), ['features', 'layerlens_head']);
    reloaded.layers?.dispose();
  });

  it('goes on past a corrupt image with a warning that names it', async () => {
    const dir = at('corrupt-ds');
    fs.cpSync(dataset, dir, { recursive: true });
    const victim = path.join(dir, 'vertical', 'vertical-000.png');
    fs.writeFileSync(victim, fs.readFileSync(victim).subarray(0, 50));
    fs.writeFileSync(path.join(dir, 'vertical', 'README.txt'), 'notes');
    const { result, progress } = await run({ modelJsonPath: modelCopy('tiny-cnn', 'corrupt'), datasetDir: dir, settings: { epochs: 1 } });
    assert.deepEqual(result.skipped.map((s) => [s.file, s.reason]), [
      ['vertical/README.txt', 'not-an-image'],
      ['vertical/vertical-000.png', 'corrupt'],
    ]);
    const lines = progress.flatMap((p) => formatProgress(p));
    assert.ok(lines.includes('Skipped 1 corrupt image: vertical/vertical-000.png is truncated (it ends inside its IDAT chunk)'), lines.join('\n'));
    assert.equal(result.trainSize + result.valSize, 89);
  });

  it('stops with one clear message for an empty class folder, a single class, and a graph model', async () => {
    const modelJsonPath = fixture('tiny-cnn', 'model.json');
    const empty = at('empty-class');
    fs.cpSync(dataset, empty, { recursive: true });
    fs.mkdirSync(path.join(empty, 'diagonal'));
    await rejectsWith(run({ modelJsonPath, datasetDir: empty }), 'bad-dataset', /class folder "diagonal" in .* has no usable PNG or JPEG images \(diagonal: it is empty\)/);
    const one = at('one-class');
    fs.cpSync(path.join(dataset, 'vertical'), path.join(one, 'cats'), { recursive: true });
    await rejectsWith(run({ modelJsonPath, datasetDir: one }), 'bad-dataset', /needs at least 2 class folders; found 1: cats/);
    await rejectsWith(run({ modelJsonPath: fixture('graph', 'model.json') }), 'bad-input', /graph model \(inference only\)/);
    await rejectsWith(run({ modelJsonPath, settings: { epochs: 0 } }), 'bad-recipe', /epochs/);
    assert.deepEqual(fs.readdirSync(fixture()).filter((n) => n.includes('finetuned')), []);
  });
});

describe('head', () => {
  before(setup);

  it('finds the last feature layer of a plain CNN and of a nested Teachable Machine model', () => {
    const cnn = tinyCnn();
    assert.equal(findFeatureCut(cnn, 'tiny').layer.name, 'gap');
    const tm = nestedModel();
    const cut = findFeatureCut(tm, 'tm');
    assert.equal(cut.layer.name, 'features');
    assert.deepEqual(cut.chain.map((l) => l.name), ['head_seq']);
    // GAP -> Dropout -> Dense -> Activation: the Dropout and the Activation go with the Dense.
    const input = tf.input({ shape: [8, 8, 3] });
    let x = tf.layers.conv2d({ filters: 2, kernelSize: 3, name: 'c' }).apply(input) as tf.SymbolicTensor;
    x = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dropout({ rate: 0.5, name: 'drop' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4, name: 'logits' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.activation({ activation: 'softmax', name: 'probs' }).apply(x) as tf.SymbolicTensor;
    const fn = tf.model({ inputs: input, outputs: x });
    assert.equal(findFeatureCut(fn, 'fn').layer.name, 'pool');
    tf.dispose([cnn, tm, fn].flatMap((m) => m.weights.map((w) => w.read())));
  });

  it('keeps a head whose labels are the classes, in the model order, and replaces one that differs', () => {
    const cnn = tinyCnn();
    const kept = planHead(cnn, { classes: ['circle', 'square', 'triangle'], modelLabels: ['triangle', 'circle', 'square'], seed: 1, modelName: 'tiny' });
    assert.equal(kept.replaced, false);
    assert.deepEqual(kept.labels, ['triangle', 'circle', 'square']);
    assert.equal(kept.model, cnn);
    const replaced = planHead(cnn, { classes: ['a', 'b'], modelLabels: ['circle', 'square', 'triangle'], seed: 1, modelName: 'tiny' });
    assert.equal(replaced.replaced, true);
    assert.deepEqual(replaced.model.outputs[0].shape, [null, 2]);
    assert.match(replaced.reason, /not the model's labels/);
    // The new head's initial weights depend on the seed only.
    const again = planHead(cnn, { classes: ['a', 'b'], seed: 1, modelName: 'tiny', cutLayer: 'gap' });
    assert.deepEqual(again.created[0].getWeights()[0].dataSync(), replaced.created[0].getWeights()[0].dataSync());
    const noLabels = planHead(cnn, { classes: ['x', 'y', 'z'], seed: 1, modelName: 'tiny' });
    assert.equal(noLabels.replaced, false);
    assert.match(noLabels.warnings[0], /has no labels/);
    assert.throws(() => planHead(cnn, { classes: ['a', 'b'], seed: 1, modelName: 'tiny', cutLayer: 'nope' }), /cutLayer "nope" is not a layer of tiny/);
    // A cut at a feature map gets pooled before the new Dense.
    const atConv = planHead(cnn, { classes: ['a', 'b'], seed: 1, modelName: 'tiny', cutLayer: 'conv2' });
    assert.deepEqual(atConv.created.map((l) => l.getClassName()), ['GlobalAveragePooling2D', 'Dense']);
    // The new head as plain ops computes what its layers compute.
    for (const plan of [replaced, atConv]) {
      const features = tf.randomNormal([5, ...(plan.backbone?.featureShape as number[])]);
      const viaLayers = plan.headLayers!.reduce((t, l) => l.apply(t) as tf.Tensor, features);
      const viaOps = plan.headOps!(features);
      const diff = tf.max(tf.abs(tf.sub(viaLayers, viaOps))).dataSync()[0];
      assert.ok(diff < 1e-6, `head ops differ from the layers by ${diff}`);
    }
  });
});

describe('training loop', () => {
  before(setup);

  /** A 2x2 linear classifier and data whose validation labels agree with training only in epoch 2. */
  function toy() {
    const dense = tf.layers.dense({ units: 2, useBias: false, inputShape: [2], kernelInitializer: 'zeros' });
    dense.apply(tf.zeros([1, 2]));
    const x = () => tf.tensor2d([[1, 0], [0, 1]]);
    const same = () => tf.tensor2d([[1, 0], [0, 1]]);
    const flipped = () => tf.tensor2d([[0, 1], [1, 0]]);
    const once = async function* (b: () => Batch): AsyncGenerator<Batch> {
      yield b();
    };
    const data: TrainData = {
      trainSize: 2,
      batchesPerEpoch: 1,
      train: () => once(() => ({ xs: x(), ys: same(), size: 2 })),
      validation: (epoch) => once(() => ({ xs: x(), ys: epoch === 1 ? same() : flipped(), size: 2 })),
    };
    const net = {
      forward: (t: tf.Tensor) => dense.apply(t) as tf.Tensor,
      outputKind: 'logits' as const,
      variables: dense.trainableWeights.map((w) => w.read() as tf.Variable),
      state: dense.weights,
    };
    return { dense, data, net };
  }

  it('stops early and restores the best epoch’s weights', async () => {
    const { dense, data, net } = toy();
    const weightsAt: Float32Array[] = [];
    const r = await trainLoop(net, data, {
      epochs: 10,
      optimizer: tf.train.sgd(0.5),
      learningRate: 0.5,
      earlyStopping: { monitor: 'val_loss', patience: 2, restoreBestWeights: true },
      monitor: 'val_loss',
      seed: 1,
      callbacks: { onEpochEnd: () => void weightsAt.push(dense.getWeights()[0].dataSync() as Float32Array) },
    });
    assert.equal(r.bestEpoch, 2);
    assert.equal(r.epochsRun, 4);
    assert.equal(r.stoppedEarly, true);
    assert.equal(r.restored, true);
    assert.deepEqual(dense.getWeights()[0].dataSync(), weightsAt[1]);
    assert.notDeepEqual(weightsAt[3], weightsAt[1]);
  });

  it('keeps the best epoch’s weights without early stopping, and its validation predictions; "keep": "last" keeps the last', async () => {
    const run = async (keepBest: boolean) => {
      const { dense, data, net } = toy();
      const weightsAt: Float32Array[] = [];
      const r = await trainLoop(net, data, {
        epochs: 5,
        optimizer: tf.train.sgd(0.5),
        learningRate: 0.5,
        monitor: 'val_loss',
        seed: 1,
        keepBest,
        callbacks: { onEpochEnd: () => void weightsAt.push(dense.getWeights()[0].dataSync() as Float32Array) },
      });
      return { r, weightsAt, final: dense.getWeights()[0].dataSync() as Float32Array };
    };
    const best = await run(true);
    assert.equal(best.r.bestEpoch, 2, 'this toy run is best at epoch 2, then worse');
    assert.equal(best.r.restored, true);
    assert.deepEqual(best.final, best.weightsAt[1]);
    assert.ok(best.r.lastValue > best.r.bestValue);
    assert.ok(best.r.predictions && best.r.predictions.length > 0, 'the kept epoch’s validation predictions');
    const last = await run(false);
    assert.equal(last.r.restored, false);
    assert.deepEqual(last.final, last.weightsAt[4]);
  });

  it('sets the scheduled learning rate on the optimizer before each epoch', async () => {
    assert.deepEqual([0, 1, 2, 3, 4].map((e) => learningRateAt(e, 5, 1, { kind: 'step', every: 2, factor: 0.5 })), [1, 1, 0.5, 0.5, 0.25]);
    const cos = [0, 1, 2, 3, 4].map((e) => learningRateAt(e, 5, 0.1, { kind: 'cosine', minLearningRate: 0.01 }));
    assert.equal(cos[0], 0.1);
    assert.ok(Math.abs(cos[4] - 0.01) < 1e-12);
    assert.ok(cos.every((v, i) => i === 0 || v < cos[i - 1]));
    for (const optimizer of [tf.train.adam(1), tf.train.sgd(1), tf.train.rmsprop(1)]) {
      const { data, net } = toy();
      const seen: number[] = [];
      await trainLoop(net, data, {
        epochs: 3,
        optimizer,
        learningRate: 0.2,
        lrSchedule: { kind: 'step', every: 1, factor: 0.1 },
        monitor: 'loss',
        seed: 1,
        callbacks: { onEpochBegin: () => void seen.push((optimizer as unknown as { learningRate: number }).learningRate) },
      });
      seen.forEach((v, i) => assert.ok(Math.abs(v - 0.2 * 0.1 ** i) < 1e-12, `${optimizer.getClassName()}: ${seen.join(', ')}`));
    }
    // SGD keeps its rate as a scalar tensor: the step itself must use the new rate.
    const w = tf.variable(tf.scalar(0));
    const sgd = tf.train.sgd(1);
    setLearningRate(sgd, 0.25);
    sgd.minimize(() => tf.mul(w, 1) as tf.Scalar, false, [w]);
    assert.equal(w.dataSync()[0], -0.25);
  });

  it('makes tfjs’s unseeded random ops (Dropout) repeat with the seed', () => {
    const x = tf.ones([64]);
    const drop = (seed: number) => withSeededRandom(new Rng(seed), () => tf.dropout(x, 0.5).dataSync());
    assert.deepEqual(drop(1), drop(1));
    assert.notDeepEqual(drop(1), drop(2));
  });

  it('cancels between batches', async () => {
    const { data, net } = toy();
    const ac = new AbortController();
    await rejectsWith(
      trainLoop(net, data, { epochs: 5, optimizer: tf.train.sgd(0.1), learningRate: 0.1, monitor: 'loss', seed: 1, signal: ac.signal, callbacks: { onBatchEnd: () => ac.abort() } }),
      'cancelled',
      /cancelled/,
    );
  });

  it('formats epoch lines like Keras', () => {
    const line = formatEpochLine({
      type: 'epoch',
      epochs: 10,
      batches: 38,
      improved: true,
      etaSec: 46,
      metrics: { epoch: 2, loss: 0.5881, acc: 0.7012, val_loss: 0.5522, val_acc: 0.75, lr: 0.001, imagesPerSec: 219.4, seconds: 5.5 },
    });
    assert.equal(line, 'Epoch 2/10  38/38  loss 0.588  acc 0.701  val_loss 0.552  val_acc 0.750  219 img/s  ETA 0:46');
    assert.equal(metricsCsv([{ epoch: 1, loss: 1, acc: 0.5, lr: 0.1, imagesPerSec: 10, seconds: 2 }]), 'epoch,loss,acc,val_loss,val_acc,lr,images_per_sec,seconds\n1,1,0.5,,,0.1,10,2\n');
  });
});

describe('layer-lens finetune', () => {
  before(setup);
  const cliArgs = (...args: string[]) => ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'finetune', ...args];

  it('trains from the command line, one line per epoch on stdout', () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'cli');
    fs.writeFileSync(path.join(path.dirname(modelJsonPath), 'layerlens.json'), JSON.stringify({ freeze: ['bn1'], finetune: { epochs: 5, learningRate: 0.02 } }));
    const r = spawnSync(process.execPath, cliArgs(modelJsonPath, dataset, '--epochs', '2', '--batch-size', '16', '--augment', 'flip,rotate', '--out', at('cli', 'out')), { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^Fine-tune: 3 classes .* augment flip\+rotate\(15\)$/);
    assert.ok(lines.some((l) => l.startsWith('Frozen: bn1 ')), r.stdout);
    assert.equal(lines.filter((l) => /^Epoch \d\/2 {2}5\/5 {2}loss /.test(l)).length, 2, r.stdout);
    assert.match(lines[lines.length - 1], /Saved .*out\/$/);
    const meta = JSON.parse(fs.readFileSync(at('cli', 'out', 'metadata.json'), 'utf8')) as { settings: { learningRate: number; epochs: number } };
    assert.equal(meta.settings.learningRate, 0.02, 'from layerlens.json');
    assert.equal(meta.settings.epochs, 2, 'the flag wins');
  });

  it('cancels cleanly on Ctrl-C: exit 130, no folder', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'sigint');
    const child = spawn(process.execPath, cliArgs(modelJsonPath, dataset, '--epochs', '500'), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (/^Epoch 1\//m.test(stdout)) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    assert.equal(code, 130, stderr);
    assert.match(stderr, /cancelled; nothing was written/);
    assert.deepEqual(fs.readdirSync(at('sigint')), ['tiny-cnn']);
  });
});
