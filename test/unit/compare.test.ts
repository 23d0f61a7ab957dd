/**
 * Comparing models: layer matching across a replaced head, weight drift
 * (exactly zero for frozen layers after a real fine-tune, which also checks
 * the freezing code), linear CKA (its invariances, checked against a tfjs
 * computation of the same formula, and that it sees a random relabeling),
 * the side-by-side maps, the live-maps probe of a fine-tune, and
 * `layer-lens compare`.
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { centeredGram, ckaFromGrams, linearCka, sampleIndices } from '../../src/engine/compare/cka';
import { Comparer } from '../../src/engine/compare/comparer';
import { listImageSet, pickEvenly } from '../../src/engine/compare/imageSet';
import { matchLayers } from '../../src/engine/compare/match';
import { LiveMapsProbe } from '../../src/engine/compare/probe';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { layerRows, loadModel, type LoadedModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { finetune } from '../../src/engine/train/finetune';
import { driftSuggestions, type CompareResult, type SimilarityResult } from '../../src/protocol/compare';
import type { TrainProbe, TrainProgress } from '../../src/protocol/train';
import { fixture, makeStripesDataset, seedWeights } from '../fixtures/models';
import { features, matmul, orthogonal } from './ckaHelpers';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-compare-'));
const at = (...p: string[]) => path.join(tmp, ...p);
let dataset = '';
/** Six images of the dataset, two per class. */
let images: string[] = [];
const loaded: LoadedModel[] = [];

async function load(p: string): Promise<LoadedModel> {
  const m = await loadModel(p);
  loaded.push(m);
  return m;
}

function modelCopy(name: string, into: string): string {
  const dir = at(into, name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.cpSync(fixture(name), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

async function save(model: tf.LayersModel, name: string): Promise<string> {
  const dir = at('models', name);
  fs.mkdirSync(dir, { recursive: true });
  await writeArtifacts(dir, await modelArtifacts(model));
  return path.join(dir, 'model.json');
}

before(async () => {
  await setup();
  dataset = makeStripesDataset(at('stripes'), { perClass: 12 });
  images = (await listImageSet(dataset, 6)).files;
});
after(() => {
  for (const m of loaded) m.layers?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('linear CKA', () => {
  const n = 40;
  const p = 12;
  const x = features(n, p, 1);

  it('is 1 under orthogonal transforms and isotropic scaling of the features, and for a zero-padded copy', () => {
    assert.ok(Math.abs(linearCka(x, x, n, p, p)! - 1) < 1e-12);
    for (const seed of [2, 3, 4]) {
      const q = orthogonal(p, seed);
      const y = matmul(x, q, n, p, p).map((v) => v * (0.01 + seed * 3.7));
      const c = linearCka(x, y, n, p, p)!;
      assert.ok(Math.abs(c - 1) < 1e-9, `seed ${seed}: CKA ${c}`);
    }
    // A translation of every feature (CKA centres) and extra dead features change nothing either.
    const padded = new Float64Array(n * (p + 5));
    for (let i = 0; i < n; i++) for (let k = 0; k < p; k++) padded[i * (p + 5) + k] = x[i * p + k] + 10;
    assert.ok(Math.abs(linearCka(x, padded, n, p, p + 5)! - 1) < 1e-9);
  });

  it('is not invariant to any linear map: an anisotropic scaling lowers it', () => {
    const y = x.map((v, i) => v * (i % p === 0 ? 50 : 1));
    const c = linearCka(x, y, n, p, p)!;
    assert.ok(c < 0.99, `CKA ${c}`);
  });

  it('detects a random relabeling of the images', () => {
    const perm = new Rng(9).shuffle(Array.from({ length: n }, (_, i) => i));
    const y = new Float64Array(n * p);
    perm.forEach((from, i) => y.set(x.subarray(from * p, (from + 1) * p), i * p));
    const c = linearCka(x, y, n, p, p)!;
    assert.ok(c < 0.5, `CKA of a relabeled copy is ${c}`);
    // ...while a little noise on the right labels keeps it high.
    const rng = new Rng(5);
    const noisy = x.map((v) => v + 0.1 * rng.normal());
    assert.ok(linearCka(x, noisy, n, p, p)! > 0.95);
  });

  it('agrees with tfjs computing the feature-space formula ||YᵀX||² / (||XᵀX|| ||YᵀY||) on the cpu backend', async () => {
    const q = 7;
    const y = features(n, q, 8);
    const mine = linearCka(x, y, n, p, q)!;
    const backend = tf.getBackend();
    await tf.setBackend('cpu');
    try {
      const ref = tf.tidy(() => {
        const center = (t: tf.Tensor2D) => tf.sub(t, tf.mean(t, 0, true)) as tf.Tensor2D;
        const X = center(tf.tensor2d(Float32Array.from(x), [n, p]));
        const Y = center(tf.tensor2d(Float32Array.from(y), [n, q]));
        const fro2 = (t: tf.Tensor) => tf.sum(tf.square(t));
        const num = fro2(tf.matMul(Y, X, true, false));
        const den = tf.sqrt(tf.mul(fro2(tf.matMul(X, X, true, false)), fro2(tf.matMul(Y, Y, true, false))));
        return tf.div(num, den).dataSync()[0];
      });
      assert.ok(Math.abs(mine - ref) < 1e-5, `float64 ${mine} vs tfjs cpu float32 ${ref}`);
    } finally {
      await tf.setBackend(backend);
    }
  });

  it('is undefined (null) for fewer than 2 images or constant activations', () => {
    assert.equal(linearCka(x.subarray(0, p), x.subarray(0, p), 1, p, p), null);
    assert.equal(linearCka(x, new Float64Array(n * 3).fill(4), n, p, 3), null);
    assert.equal(ckaFromGrams(centeredGram(new Float64Array(6), 3, 2), centeredGram(new Float64Array(6), 3, 2)), null);
  });

  it('subsamples big layers deterministically: every channel at the same seeded positions, still invariant to a channel rotation', () => {
    assert.equal(sampleIndices([4, 4, 8], 1000), undefined);
    const idx = sampleIndices([10, 10, 4], 64)!;
    assert.deepEqual(idx, sampleIndices([10, 10, 4], 64));
    assert.equal(idx.length, 64);
    for (let i = 0; i < idx.length; i += 4) for (let c = 0; c < 4; c++) assert.equal(idx[i + c], idx[i] + c);
    assert.ok(idx[0] % 4 === 0);
    // Not a regular stride of positions (which could alias with stripes).
    const positions = Array.from({ length: 16 }, (_, i) => idx[i * 4] / 4);
    const steps = new Set(positions.slice(1).map((v, i) => v - positions[i]));
    assert.ok(steps.size > 1);
    assert.equal(sampleIndices([1000], 100)!.length, 100);
    // Maps whose channels are rotated by an orthogonal matrix keep CKA 1 after sampling.
    const [h, w, c] = [10, 10, 4];
    const nImg = 12;
    const maps = features(nImg, h * w * c, 3);
    const rot = orthogonal(c, 4);
    const rotated = new Float64Array(maps.length);
    for (let i = 0; i < nImg * h * w; i++) rotated.set(matmul(maps.subarray(i * c, (i + 1) * c), rot, 1, c, c), i * c);
    const pick = (m: Float64Array) => {
      const out = new Float64Array(nImg * idx.length);
      for (let i = 0; i < nImg; i++) idx.forEach((k, j) => (out[i * idx.length + j] = m[i * h * w * c + k]));
      return out;
    };
    assert.ok(Math.abs(linearCka(pick(maps), pick(rotated), nImg, idx.length, idx.length)! - 1) < 1e-9);
  });

  it('picks images evenly over a sorted folder', async () => {
    assert.deepEqual(pickEvenly([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3), [1, 5, 8]);
    assert.deepEqual(images.map((f) => path.basename(path.dirname(f))), ['checker', 'checker', 'horizontal', 'horizontal', 'vertical', 'vertical']);
    assert.equal((await listImageSet(dataset, 100)).found, 36);
  });
});

describe('layer matching', () => {
  before(setup);

  /** conv 'c1' → gap 'g' → dense 'd' (3 units), flat. */
  function flat(seed: number): tf.Sequential {
    const m = tf.sequential({ name: 'flat' });
    m.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, activation: 'relu', name: 'c1' }));
    m.add(tf.layers.globalAveragePooling2d({ name: 'g' }));
    m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'd' }));
    seedWeights(m, seed);
    return m;
  }

  /** The same conv and pooling wrapped in a nested model 'features', then 'd' with 2 units. */
  function wrapped(seed: number): tf.Sequential {
    const features = tf.sequential({ name: 'features' });
    features.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, activation: 'relu', name: 'c1' }));
    features.add(tf.layers.globalAveragePooling2d({ name: 'g' }));
    const m = tf.sequential({ name: 'wrapped', layers: [features, tf.layers.dense({ units: 2, activation: 'softmax', name: 'd' })] });
    seedWeights(m, seed);
    return m;
  }

  it('matches by path, then by unique name, requires the same class and output shape, and lists the rest with a reason', () => {
    const a = flat(1);
    const b = wrapped(2);
    const m = matchLayers(layerRows(a), layerRows(b));
    assert.deepEqual(m.pairs.map((p) => [p.a.path, p.b.path, p.by]), [
      ['c1', 'features/c1', 'name'],
      ['g', 'features/g', 'name'],
    ]);
    assert.deepEqual(m.onlyA.map((u) => u.path), ['d']);
    assert.match(m.onlyA[0].reason, /output shape \[\?, 3\] in A, \[\?, 2\] in B/);
    assert.deepEqual(m.onlyB.map((u) => u.path), ['features', 'd']);
    assert.match(m.onlyB[0].reason, /A has no layer features/);
    // A layer of another class under the same name does not match.
    const c = tf.sequential({ name: 'other' });
    c.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, name: 'x' }));
    c.add(tf.layers.maxPooling2d({ poolSize: 6, name: 'g' }));
    const m2 = matchLayers(layerRows(a), layerRows(c));
    assert.match(m2.onlyA.find((u) => u.path === 'g')!.reason, /a GlobalAveragePooling2D in A, a MaxPooling2D in B/);
    tf.dispose([a, b, c].flatMap((x) => x.weights.map((w) => w.read())));
  });

  it('compares across a replaced head and a re-wrapped backbone: the shared layers drift 0, the rest is listed', async () => {
    const a = flat(1);
    const b = wrapped(2);
    // B's conv gets A's weights: the same layer, moved into a nested model.
    (b.getLayer('features') as tf.Sequential).getLayer('c1').setWeights(a.getLayer('c1').getWeights());
    const ma = await load(await save(a, 'flat'));
    const mb = await load(await save(b, 'wrapped'));
    tf.dispose([a, b].flatMap((x) => x.weights.map((w) => w.read())));
    const comparer = new Comparer();
    try {
      const img = images[0];
      const r = await comparer.compare(ma, mb, img, 'zeroOne');
      const byPath = new Map(r.layers.map((l) => [l.path, l]));
      assert.equal(byPath.get('c1')?.weightDrift, 0);
      assert.equal(byPath.get('c1')?.activationChange, 0);
      assert.equal(byPath.get('g')?.weightDrift, null, 'a weightless layer: 0/0');
      assert.equal(byPath.get('g')?.driftNote, 'no weights');
      assert.deepEqual(r.onlyA.map((u) => u.path), ['d']);
      assert.deepEqual(r.onlyB.map((u) => u.path), ['features', 'd']);
      assert.equal(r.a.predictions.length, 3);
      assert.equal(r.b.predictions.length, 2);
      const maps = await comparer.maps(ma.summary.modelPath, mb.summary.modelPath, 'c1', 0);
      assert.equal(maps.maxAbsDiff, 0);
      assert.ok(maps.diff.data.every((v) => v === 0));
      assert.deepEqual(maps.a.data, maps.b.data);
    } finally {
      comparer.dispose();
    }
  });
});

describe('compare', () => {
  before(setup);

  async function similarityOf(comparer: Comparer, a: LoadedModel, b: LoadedModel): Promise<SimilarityResult> {
    return comparer.similarity(a, b, images, 'zeroOne');
  }

  it('a model compared with itself: zero drift and similarity 1 everywhere, A and B maps identical', async () => {
    const comparer = new Comparer();
    try {
      for (const name of ['tiny-cnn', 'nested']) {
        const p = fixture(name, 'model.json');
        // Two loads of the same file: different tensors, the same values.
        const a = await loadModel(p);
        const b = await loadModel(p);
        const before = tf.memory().numTensors;
        const r = await comparer.compare(a, b, images[1], 'zeroOne');
        assert.equal(r.onlyA.length + r.onlyB.length, 0);
        assert.equal(r.layers.length, a.summary.layers.length);
        for (const l of r.layers) {
          if (l.params > 0) assert.ok(l.weightDrift !== null && Math.abs(l.weightDrift) <= 1e-6, `${name} ${l.path}: drift ${l.weightDrift}`);
          else assert.equal(l.weightDrift, null, `${name} ${l.path} has no weights`);
          if (l.activationChange !== null) assert.ok(l.activationChange <= 1e-6, `${name} ${l.path}: activation change ${l.activationChange}`);
        }
        assert.deepEqual(r.b.predictions, r.a.predictions);
        const sim = await similarityOf(comparer, a, b);
        assert.equal(sim.images, 6);
        assert.equal(sim.layers.length, r.layers.length);
        for (const s of sim.layers) assert.ok(s.cka !== null && Math.abs(s.cka - 1) <= 1e-6, `${name} ${s.path}: CKA ${s.cka}`);
        // The very same LoadedModel on both sides works too.
        const same = await comparer.compare(a, a, images[1], 'zeroOne');
        assert.ok(same.layers.every((l) => l.weightDrift === null || l.weightDrift === 0));
        const mapLayer = r.layers.find((l) => l.kind === 'map' && l.className !== 'InputLayer')!;
        const maps = await comparer.maps(a.summary.modelPath, b.summary.modelPath, mapLayer.path, 64);
        assert.deepEqual(maps.a.data, maps.b.data);
        assert.equal(maps.maxAbsDiff, 0);
        comparer.release(p);
        assert.equal(tf.memory().numTensors, before, `${name}: no tensors left behind`);
        a.layers?.dispose();
        b.layers?.dispose();
      }
    } finally {
      comparer.dispose();
    }
  });

  it('after a fine-tune with frozen layers: exactly zero drift (and CKA 1) for them, drift for the trained ones, the replaced head listed', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'ft');
    const progress: TrainProgress[] = [];
    const result = await finetune({
      modelJsonPath,
      datasetDir: dataset,
      settings: { epochs: 2, batchSize: 8, learningRate: 0.01, augment: { flip: { enabled: false } } },
      // conv1 and bn1 frozen (bn1's moving statistics too, Keras-style); conv2 and the new head train.
      frozen: ['conv1', 'bn1'],
      outDir: at('ft', 'tuned'),
      onProgress: (p) => progress.push(p),
    });
    const a = await load(modelJsonPath);
    const b = await load(path.join(result.outputPath, 'model.json'));
    const comparer = new Comparer();
    let r: CompareResult;
    let sim: SimilarityResult;
    try {
      r = await comparer.compare(a, b, images[0], 'zeroOne');
      sim = await similarityOf(comparer, a, b);
    } finally {
      comparer.dispose();
    }
    const drift = new Map(r.layers.map((l) => [l.path, l]));
    assert.equal(drift.get('conv1')?.weightDrift, 0, 'frozen conv1');
    assert.equal(drift.get('bn1')?.weightDrift, 0, 'frozen bn1 (gamma, beta, moving mean and variance)');
    assert.ok((drift.get('conv2')?.weightDrift ?? 0) > 1e-4, `trained conv2 moved: ${drift.get('conv2')?.weightDrift}`);
    assert.equal(drift.get('pool1')?.weightDrift, null);
    assert.equal(drift.get('conv1')?.activationChange, 0);
    // The head: tiny-cnn's labels are not the dataset's classes, so it was replaced.
    assert.deepEqual(r.onlyA.map((u) => u.path), ['head']);
    assert.deepEqual(r.onlyB.map((u) => u.path), ['layerlens_head']);
    assert.deepEqual(r.b.labels, ['checker', 'horizontal', 'vertical']);
    assert.deepEqual(r.a.labels, ['circle', 'square', 'triangle']);
    const cka = new Map(sim.layers.map((s) => [s.path, s.cka]));
    assert.ok(Math.abs((cka.get('conv1') ?? 0) - 1) < 1e-6, `conv1 CKA ${cka.get('conv1')}`);
    assert.ok(Math.abs((cka.get('pool1') ?? 0) - 1) < 1e-6, `pool1 CKA ${cka.get('pool1')}`);
    assert.ok((cka.get('conv2') ?? 1) < 1 - 1e-6, `conv2 CKA ${cka.get('conv2')}`);
    const s = driftSuggestions(r.layers, sim.layers);
    assert.deepEqual(s.unchanged, ['conv1', 'bn1']);
    assert.equal(s.movedMost[0], 'conv2');
    assert.match(s.lines.join('\n'), /Unchanged \(frozen or untouched\): conv1, bn1\./);
    assert.match(s.lines.join('\n'), /Moved most: conv2 \(/);
  });
});

describe('live maps during a fine-tune', () => {
  before(setup);

  it("sends the probe image's maps of the watched layer before training and after every epoch", async () => {
    const probes: TrainProbe[] = [];
    const warnings: string[] = [];
    // No time budget here: every epoch is probed, however short (the budget has its own test).
    const probe = new LiveMapsProbe({ imagePath: images[2], layerPath: 'conv2', budget: Infinity });
    const frozenProbe = new LiveMapsProbe({ imagePath: images[2], layerPath: 'conv1', budget: Infinity });
    const before = tf.memory().numTensors;
    try {
      for (const [p, outDir] of [[probe, 'live'], [frozenProbe, 'live-frozen']] as const) {
        await finetune({
          modelJsonPath: modelCopy('tiny-cnn', outDir),
          datasetDir: dataset,
          settings: { epochs: 3, batchSize: 8, learningRate: 0.02, augment: { flip: { enabled: false } } },
          frozen: ['conv1'],
          outDir: at(outDir, 'out'),
          probe: p,
          onProgress: (m) => {
            if (m.type === 'probe') probes.push(m);
            if (m.type === 'warning') warnings.push(m.message);
          },
        });
      }
    } finally {
      probe.dispose();
      frozenProbe.dispose();
    }
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
    assert.deepEqual(warnings, []);
    const live = probes.filter((p) => p.layerPath === 'conv2');
    assert.deepEqual(live.map((p) => p.epoch), [0, 1, 2, 3]);
    const m = live[0].maps;
    assert.deepEqual([m.kind, m.channels, m.fullHeight, m.fullWidth], ['map', 8, 7, 7]);
    assert.equal(m.data.length, 8 * 7 * 7);
    assert.notDeepEqual(live[3].maps.stats, live[0].maps.stats, 'a trained layer changes');
    assert.ok(live.every((p) => !p.unchanging));
    // A layer with only frozen layers before it cannot change: computed once, marked as such.
    const frozen = probes.filter((p) => p.layerPath === 'conv1');
    assert.deepEqual(frozen.map((p) => [p.epoch, p.unchanging]), [[0, true]]);
  });

  it('keeps its time within the budget by skipping epochs too short to pay for it', async () => {
    const probes: TrainProbe[] = [];
    const probe = new LiveMapsProbe({ imagePath: images[2], layerPath: 'conv2', budget: 0 });
    try {
      await finetune({
        modelJsonPath: modelCopy('tiny-cnn', 'live-budget'),
        datasetDir: dataset,
        settings: { epochs: 3, batchSize: 16, augment: { flip: { enabled: false } } },
        frozen: [],
        outDir: at('live-budget', 'out'),
        probe,
        onProgress: (m) => void (m.type === 'probe' && probes.push(m)),
      });
    } finally {
      probe.dispose();
    }
    // Before training, and after epoch 1 (which measures a warm probe's cost); then nothing fits a budget of 0.
    assert.deepEqual(probes.map((p) => p.epoch), [0, 1]);
    assert.equal(probe.skipped, 2);
  });

  it('warns once and lets training go on when the watched layer is not in the trained model', async () => {
    const messages: TrainProgress[] = [];
    const probe = new LiveMapsProbe({ imagePath: images[0], layerPath: 'head' });
    try {
      const r = await finetune({
        modelJsonPath: modelCopy('tiny-cnn', 'live-head'),
        datasetDir: dataset,
        settings: { epochs: 2, batchSize: 16, augment: { flip: { enabled: false } } },
        frozen: [],
        outDir: at('live-head', 'out'),
        probe,
        onProgress: (m) => messages.push(m),
      });
      assert.equal(r.epochsRun, 2);
    } finally {
      probe.dispose();
    }
    const warnings = messages.filter((m) => m.type === 'warning');
    assert.equal(warnings.length, 1);
    assert.match((warnings[0] as { message: string }).message, /probe layer head is not part of the model being trained/);
    assert.equal(messages.filter((m) => m.type === 'probe').length, 0);
  });
});

describe('layer-lens compare', () => {
  before(setup);
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'compare', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });

  it('writes drift.json and A | B | diff PNGs per matched feature-map layer', async () => {
    const a = modelCopy('tiny-cnn', 'cli');
    const tuned = await finetune({
      modelJsonPath: a,
      datasetDir: dataset,
      settings: { epochs: 1, batchSize: 16, augment: { flip: { enabled: false } } },
      frozen: ['conv1'],
      outDir: at('cli', 'tuned'),
      onProgress: () => undefined,
    });
    const b = path.join(tuned.outputPath, 'model.json');
    const out = at('cli', 'out');
    const r = cli(a, b, '--image', images[0], '--images', dataset, '--max-images', '9', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /CKA over 9 images/);
    assert.match(r.stdout, /Only in A: head \(Dense\)/);
    const drift = JSON.parse(fs.readFileSync(path.join(out, 'drift.json'), 'utf8')) as {
      layers: { path: string; matched: boolean; weightDrift: number | null; activationSimilarity: number | null; shapeA: unknown; shapeB?: unknown; png?: string }[];
      unmatched: { a: { path: string }[]; b: { path: string }[] };
      images: { used: number };
    };
    assert.equal(drift.images.used, 9);
    const conv1 = drift.layers.find((l) => l.path === 'conv1')!;
    assert.equal(conv1.matched, true);
    assert.equal(conv1.weightDrift, 0);
    assert.ok(Math.abs((conv1.activationSimilarity ?? 0) - 1) < 1e-6);
    assert.deepEqual(conv1.shapeA, [null, 14, 14, 4]);
    assert.deepEqual(conv1.shapeB, [null, 14, 14, 4]);
    assert.ok((drift.layers.find((l) => l.path === 'conv2')!.weightDrift ?? 0) > 0);
    assert.equal(drift.layers.find((l) => l.path === 'head')!.matched, false);
    assert.deepEqual(drift.unmatched.a.map((u) => u.path), ['head']);
    assert.deepEqual(drift.unmatched.b.map((u) => u.path), ['layerlens_head']);
    const pngs = drift.layers.filter((l) => l.png).map((l) => l.path);
    assert.deepEqual(pngs, ['conv1', 'bn1', 'pool1', 'conv2']);
    const png = fs.readFileSync(path.join(out, drift.layers.find((l) => l.path === 'conv1')!.png!));
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    // 4 channels in a 2x2 grid of 14x14 maps with 1 px gaps is 29 px wide; three of them and two 6 px gaps.
    assert.equal(png.readUInt32BE(16), 3 * 29 + 2 * 6);
    assert.equal(png.readUInt32BE(20), 29);
  });

  it('exits 2 with the usage for bad arguments', () => {
    for (const args of [[fixture('tiny-cnn', 'model.json')], [fixture('tiny-cnn', 'model.json'), fixture('tiny-cnn', 'model.json'), '--out', at('x')], [fixture('tiny-cnn', 'model.json'), fixture('tiny-cnn', 'model.json'), '--image', images[0], '--out', at('x'), '--max-images', '1'], ['--bogus']]) {
      const r = cli(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Usage: layer-lens/);
      assert.match(r.stderr, /compare <model A> <model B>/);
    }
  });
});
