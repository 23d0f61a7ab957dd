import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { computeEmbeddings, defaultEmbeddingLayer } from '../../src/engine/embed/compute';
import { CosineIndex } from '../../src/engine/embed/knn';
import { symmetricEigen } from '../../src/engine/embed/linalg';
import { pca } from '../../src/engine/embed/pca';
import { formatFloat32, metadataTsv, parseMetadataTsv, parseVectorsTsv, vectorsTsv, writeProjectorFiles } from '../../src/engine/embed/tsv';
import { umap2d } from '../../src/engine/embed/umap';
import { EmbeddingSets, neighbors, projectSet, thumbnail } from '../../src/engine/embed/latent';
import { MANIFEST } from '../../src/engine/embed/store';
import { loadModel, disposeModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { finetune } from '../../src/engine/train/finetune';
import { fixture, makeStripesDataset, stripesClasses } from '../fixtures/models';
import { setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-embed-'));
const at = (...p: string[]) => path.join(tmp, ...p);

function modelCopy(name: string, into: string): string {
  const dir = at(into, name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.cpSync(fixture(name), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

/** Three Gaussian blobs in d dimensions, `per` points each, well apart along random directions. */
function blobs(per: number, d: number, seed: number): { data: Float32Array; labels: number[] } {
  const rng = new Rng(seed);
  const centres = [0, 1, 2].map(() => Array.from({ length: d }, () => 6 * rng.normal()));
  const data = new Float32Array(3 * per * d);
  const labels: number[] = [];
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < per; i++) {
      const r = c * per + i;
      for (let j = 0; j < d; j++) data[r * d + j] = centres[c][j] + rng.normal();
      labels.push(c);
    }
  }
  return { data, labels };
}

/** Nearest-centroid accuracy of 2-D points: 1 when the classes are separated. */
function centroidAccuracy(xy: Float32Array, labels: number[], k: number): number {
  const cx = new Array<number>(k).fill(0);
  const cy = new Array<number>(k).fill(0);
  const n = new Array<number>(k).fill(0);
  labels.forEach((l, i) => {
    cx[l] += xy[2 * i];
    cy[l] += xy[2 * i + 1];
    n[l]++;
  });
  for (let c = 0; c < k; c++) {
    cx[c] /= n[c];
    cy[c] /= n[c];
  }
  let right = 0;
  labels.forEach((l, i) => {
    let best = 0;
    let bestD = Infinity;
    for (let c = 0; c < k; c++) {
      const dd = (xy[2 * i] - cx[c]) ** 2 + (xy[2 * i + 1] - cy[c]) ** 2;
      if (dd < bestD) {
        bestD = dd;
        best = c;
      }
    }
    if (best === l) right++;
  });
  return right / labels.length;
}

before(setup);
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('embedding cache on disk', () => {
  it('computes every image once, then reads the cache; a touched file is recomputed alone, removed ones dropped, new ones added', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'cache');
    const data = makeStripesDataset(at('stripes'), { perClass: 4, jpegEvery: 0 });
    const loaded = await loadModel(modelJsonPath);
    try {
      assert.equal(defaultEmbeddingLayer(loaded), 'gap');
      const first = await computeEmbeddings({ loaded, datasetDir: data });
      assert.equal(first.summary.computed, 12);
      assert.equal(first.summary.reused, 0);
      assert.deepEqual(first.classes, stripesClasses);
      assert.equal(first.dim, 8);
      assert.ok(first.summary.cacheDir.startsWith(path.join(path.dirname(modelJsonPath), '.layerlens', 'embeddings')), first.summary.cacheDir);
      assert.ok(fs.existsSync(path.join(first.summary.cacheDir, MANIFEST)));
      assert.deepEqual(fs.readdirSync(data).sort(), stripesClasses, 'nothing is written into the dataset');
      // The stored rows are the layer's outputs: compare one with the model cut at "gap".
      const manifest = JSON.parse(fs.readFileSync(path.join(first.summary.cacheDir, MANIFEST), 'utf8')) as { files: { path: string; size: number; mtimeMs: number }[]; layer: string; modelHash: string; normalization: string };
      assert.equal(manifest.layer, 'gap');
      assert.equal(manifest.normalization, 'zeroOne');
      assert.match(manifest.modelHash, /^[0-9a-f]{64}$/);
      assert.equal(manifest.files.length, 12);

      const second = await computeEmbeddings({ loaded, datasetDir: data });
      assert.equal(second.summary.computed, 0);
      assert.equal(second.summary.reused, 12);
      assert.deepEqual(Array.from(second.vectors), Array.from(first.vectors));

      const touched = path.join(data, 'vertical', 'vertical-001.png');
      const later = new Date(Date.now() + 5000);
      fs.utimesSync(touched, later, later);
      fs.rmSync(path.join(data, 'checker', 'checker-000.png'));
      fs.copyFileSync(path.join(data, 'horizontal', 'horizontal-000.png'), path.join(data, 'horizontal', 'horizontal-new.png'));
      const third = await computeEmbeddings({ loaded, datasetDir: data });
      assert.equal(third.summary.computed, 2, 'the touched file and the new one');
      assert.equal(third.summary.reused, 10);
      assert.equal(third.summary.dropped, 1);
      assert.equal(third.summary.count, 12);
      const row = (set: typeof first, rel: string) => {
        const i = set.images.findIndex((im) => im.rel === rel);
        return Array.from(set.vectors.subarray(i * set.dim, (i + 1) * set.dim));
      };
      assert.deepEqual(row(third, 'vertical/vertical-001.png'), row(first, 'vertical/vertical-001.png'), 'same pixels, same embedding');
      assert.deepEqual(row(third, 'horizontal/horizontal-new.png'), row(first, 'horizontal/horizontal-000.png'));

      // Another model version (its weights changed) invalidates every row.
      const other = await computeEmbeddings({ loaded, datasetDir: data, layer: 'conv2' });
      assert.equal(other.summary.computed, 12, 'another layer is another cache');
      assert.equal(other.summary.pooling, 'none');
      assert.equal(other.dim, 8 * 7 * 7);
    } finally {
      disposeModel(loaded);
    }
  });

  it('is the same cache the fine-tune uses when its backbone is frozen: it reads it and writes it', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'shared');
    const data = makeStripesDataset(at('stripes-shared'), { perClass: 5, jpegEvery: 0 });
    const frozen = ['conv1', 'bn1', 'pool1', 'conv2', 'gap'];
    const settings = { epochs: 2, batchSize: 8, augment: { flip: { enabled: false } } };
    // Count the backbone's runs: calls of its first layer on concrete tensors.
    const original = tf.layers.Layer.prototype.apply;
    let conv1Calls = 0;
    tf.layers.Layer.prototype.apply = function (this: tf.layers.Layer, ...args: Parameters<typeof original>) {
      if (this.name === 'conv1' && !(args[0] instanceof tf.SymbolicTensor) && !(Array.isArray(args[0]) && args[0][0] instanceof tf.SymbolicTensor)) conv1Calls++;
      return original.apply(this, args);
    } as typeof original;
    try {
      // 1. Fine-tune first: it computes the backbone's outputs and stores them.
      const a = await finetune({ modelJsonPath, datasetDir: data, settings, frozen, onProgress: () => undefined, outDir: at('shared', 'a') });
      assert.equal(a.embeddingCache, true);
      assert.ok(conv1Calls > 0);
      const loaded = await loadModel(modelJsonPath);
      try {
        const set = await computeEmbeddings({ loaded, datasetDir: data });
        assert.equal(set.summary.computed, 0, 'Compute Embeddings reads what the fine-tune stored');
        assert.equal(set.summary.reused, 15);
      } finally {
        disposeModel(loaded);
      }
      // 2. A second fine-tune reads every row from disk: the backbone never runs.
      conv1Calls = 0;
      const b = await finetune({ modelJsonPath, datasetDir: data, settings, frozen, onProgress: () => undefined, outDir: at('shared', 'b') });
      assert.equal(conv1Calls, 0, 'the backbone did not run');
      assert.deepEqual(b.metrics.map((m) => m.loss), a.metrics.map((m) => m.loss));
    } finally {
      tf.layers.Layer.prototype.apply = original;
    }
  });
});

describe('projector TSV export', () => {
  it('round-trips vectors exactly and writes the label/path metadata', async () => {
    const rng = new Rng(3);
    const vectors = Float32Array.from({ length: 5 * 3 }, () => rng.normal() * 10 ** rng.int(6));
    vectors[4] = 0;
    vectors[5] = -1e-7;
    const text = vectorsTsv(vectors, 3);
    const back = parseVectorsTsv(text);
    assert.equal(back.rows, 5);
    assert.equal(back.dim, 3);
    assert.deepEqual(Array.from(back.vectors), Array.from(vectors));
    assert.equal(formatFloat32(Math.fround(0.1)), '0.1');
    const paths = ['a/x.png', 'b/y\tz.png', 'a/w.png', 'b/v.png', 'a/u.png'];
    const labels = [0, 1, 0, 1, 0];
    const meta = parseMetadataTsv(metadataTsv(paths, labels, ['cats', 'dogs']));
    assert.deepEqual(meta.header, ['label', 'path']);
    assert.deepEqual(meta.rows[1], ['dogs', 'b/y z.png']);
    const flat = parseMetadataTsv(metadataTsv(paths, labels, null));
    assert.equal(flat.header, null);
    assert.equal(flat.rows.length, 5);
    const files = await writeProjectorFiles(at('tsv'), { vectors, dim: 3, paths, labels, classes: ['cats', 'dogs'] });
    assert.deepEqual(Array.from(parseVectorsTsv(fs.readFileSync(files.vectors, 'utf8')).vectors), Array.from(vectors));
    assert.equal(fs.readFileSync(files.metadata, 'utf8').split('\n')[0], 'label\tpath');
  });
});

describe('PCA', () => {
  it('matches the eigenvectors of the full covariance (Jacobi) with a fixed sign, and separates 3 Gaussian blobs', () => {
    const d = 12;
    const { data, labels } = blobs(40, d, 5);
    const n = labels.length;
    const r = pca(data, n, d, 2, { seed: 1 });
    // Reference: covariance matrix, full Jacobi eigen-decomposition.
    const mean = new Float64Array(d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += data[i * d + j] / n;
    const cov = new Float64Array(d * d);
    for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) cov[a * d + b] += ((data[i * d + a] - mean[a]) * (data[i * d + b] - mean[b])) / (n - 1);
    const ref = symmetricEigen(cov, d);
    let total = 0;
    for (let j = 0; j < d; j++) total += cov[j * d + j];
    for (let c = 0; c < 2; c++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += r.components[c * d + j] * ref.vectors[j * d + c];
      assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-4, `component ${c}: |cos| ${Math.abs(dot)}`);
      assert.ok(Math.abs(r.variances[c] - ref.values[c]) / ref.values[c] < 1e-4, `variance ${c}: ${r.variances[c]} vs ${ref.values[c]}`);
      assert.ok(Math.abs(r.explained[c] - ref.values[c] / total) < 1e-4);
      // Sign convention: the largest-magnitude entry is positive.
      let best = 0;
      for (let j = 1; j < d; j++) if (Math.abs(r.components[c * d + j]) > Math.abs(r.components[c * d + best])) best = j;
      assert.ok(r.components[c * d + best] > 0);
    }
    assert.equal(centroidAccuracy(r.projection, labels, 3), 1, 'the blobs are apart on the map');
    const again = pca(data, n, d, 2, { seed: 99 });
    for (let i = 0; i < r.projection.length; i++) assert.ok(Math.abs(again.projection[i] - r.projection[i]) < 1e-3, 'another start gives the same map (deterministic signs)');
  });

  it('UMAP (seeded) separates the blobs too, and gives the same map for the same seed', async () => {
    const { data, labels } = blobs(20, 8, 9);
    const a = await umap2d(data, 60, 8, { seed: 4, nEpochs: 100 });
    const b = await umap2d(data, 60, 8, { seed: 4, nEpochs: 100 });
    assert.deepEqual(Array.from(a), Array.from(b));
    assert.ok(centroidAccuracy(a, labels, 3) >= 0.95);
  });
});

describe('latent map requests', () => {
  it('projects a set, lists cosine neighbours in the embedding space and makes thumbnails', async () => {
    const modelJsonPath = modelCopy('tiny-cnn', 'map');
    const data = makeStripesDataset(at('stripes-map'), { perClass: 4, jpegEvery: 0 });
    const loaded = await loadModel(modelJsonPath);
    try {
      const sets = new EmbeddingSets();
      const held = sets.add(await computeEmbeddings({ loaded, datasetDir: data }));
      const map = await projectSet(held, sets.summary(held), 'pca');
      assert.equal(map.xy.length, 24);
      assert.deepEqual(Array.from(map.labels), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
      assert.ok(map.explained && map.explained[0] >= map.explained[1]);
      const nn = neighbors(held, 0, 3);
      assert.equal(nn.length, 3);
      assert.ok(nn[0].similarity >= nn[1].similarity && nn[1].similarity >= nn[2].similarity);
      const idx = new CosineIndex(held.vectors, held.dim);
      const brute = Array.from({ length: 12 }, (_, i) => i).filter((i) => i !== 0);
      const cos = (i: number) => {
        let s = 0;
        for (let j = 0; j < held.dim; j++) s += idx.unit[j] * idx.unit[i * held.dim + j];
        return s;
      };
      brute.sort((x, y) => cos(y) - cos(x) || x - y);
      assert.deepEqual(nn.map((x) => x.index), brute.slice(0, 3));
      const thumb = await thumbnail(held, 5, 8);
      assert.match(thumb.dataUrl, /^data:image\/png;base64,/);
      assert.equal(thumb.path, held.images[5].rel);
      assert.throws(() => neighbors(held, 99, 3), /not in this map/);
    } finally {
      disposeModel(loaded);
    }
  });
});
