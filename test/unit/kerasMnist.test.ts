/**
 * The real Keras MNIST files in ../shared/fixtures (when this clone has
 * them), opened without Python and checked against a forward pass in plain
 * JavaScript over the raw HDF5 arrays.
 */
import * as tf from '@tensorflow/tfjs';
import { unzipSync } from 'fflate';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { Hdf5File, type Hdf5Dataset, type Hdf5Node } from '../../src/engine/io/hdf5';
import { loadModel } from '../../src/engine/model';
import { maxAbsDiff, predict, setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const shared = path.resolve(root, '../shared/fixtures/keras-mnist');
const noShared = !fs.existsSync(shared) && 'no ../shared/fixtures (not in this clone)';

function readAll(h5: Hdf5File, node: Hdf5Node, out = new Map<string, { shape: number[]; v: Float32Array }>()) {
  for (const k of h5.children(node)) {
    const c = h5.child(node, k);
    if (c?.kind === 'group') readAll(h5, c, out);
    else if (c?.kind === 'dataset' && c.type === 'float32') out.set(c.path, { shape: (c as Hdf5Dataset).shape, v: h5.readFloats(c) });
  }
  return out;
}

function denseJs(x: Float64Array, k: { shape: number[]; v: Float32Array }, b: { v: Float32Array }, act: 'relu' | 'softmax'): Float64Array {
  const [n, m] = k.shape;
  const y = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    let s = b.v[j];
    for (let i = 0; i < n; i++) s += x[i] * k.v[i * m + j];
    y[j] = s;
  }
  if (act === 'relu') return y.map((v) => Math.max(0, v));
  const max = Math.max(...y);
  const e = y.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, c) => a + c, 0);
  return e.map((v) => v / sum);
}

/** 'valid' 3x3 convolution, stride 1, then ReLU; x is [h, w, c] row-major. */
function convJs(x: Float64Array, h: number, w: number, c: number, k: { shape: number[]; v: Float32Array }, b: { v: Float32Array }): Float64Array {
  const [kh, kw, , o] = k.shape;
  const oh = h - kh + 1;
  const ow = w - kw + 1;
  const y = new Float64Array(oh * ow * o);
  for (let i = 0; i < oh; i++)
    for (let j = 0; j < ow; j++)
      for (let f = 0; f < o; f++) {
        let s = b.v[f];
        for (let di = 0; di < kh; di++) for (let dj = 0; dj < kw; dj++) for (let ch = 0; ch < c; ch++) s += x[((i + di) * w + (j + dj)) * c + ch] * k.v[((di * kw + dj) * c + ch) * o + f];
        y[(i * ow + j) * o + f] = Math.max(0, s);
      }
  return y;
}

function maxPoolJs(x: Float64Array, h: number, w: number, c: number): Float64Array {
  const oh = Math.floor(h / 2);
  const ow = Math.floor(w / 2);
  const y = new Float64Array(oh * ow * c);
  for (let i = 0; i < oh; i++)
    for (let j = 0; j < ow; j++)
      for (let ch = 0; ch < c; ch++) {
        let m = -Infinity;
        for (let di = 0; di < 2; di++) for (let dj = 0; dj < 2; dj++) m = Math.max(m, x[((2 * i + di) * w + (2 * j + dj)) * c + ch]);
        y[(i * ow + j) * c + ch] = m;
      }
  return y;
}

describe('the real Keras MNIST files', { skip: noShared }, () => {
  before(setup);
  // Despite the fixtures README, the two files are different models: the .h5
  // is a CNN saved by Keras 3.13 in the legacy format, the .keras an MLP saved
  // by Keras 2.15 on Windows (backslash group names). Each is checked against
  // its own raw arrays.
  const images = () => tf.randomUniform([3, 28, 28], 0, 1, 'float32', 23);

  it('mnist_model.h5 (Keras 3.13 legacy HDF5, CNN) matches a plain-JS forward pass to 1e-4', async () => {
    const loaded = await loadModel(path.join(shared, 'mnist_model.h5'));
    assert.deepEqual(loaded.summary.inputShape, [null, 28, 28, 1]);
    assert.deepEqual(
      loaded.summary.layers.map((l) => l.name),
      ['conv2d', 'max_pooling2d', 'conv2d_1', 'max_pooling2d_1', 'flatten_1', 'dense_3', 'dense_4'],
    );
    const h5 = await Hdf5File.open(new Uint8Array(fs.readFileSync(path.join(shared, 'mnist_model.h5'))));
    const raw = readAll(h5, h5.group(h5.root(), 'model_weights')!);
    h5.close();
    const w = (l: string, n: string) => raw.get(`model_weights/${l}/sequential_1/${l}/${n}`)!;
    const x = images();
    const xs = x.dataSync();
    const got = predict(loaded.layers!, x.reshape([3, 28, 28, 1]));
    for (let s = 0; s < 3; s++) {
      let a: Float64Array = Float64Array.from(xs.subarray(s * 784, (s + 1) * 784));
      a = maxPoolJs(convJs(a, 28, 28, 1, w('conv2d', 'kernel'), w('conv2d', 'bias')), 26, 26, 32);
      a = maxPoolJs(convJs(a, 13, 13, 32, w('conv2d_1', 'kernel'), w('conv2d_1', 'bias')), 11, 11, 64);
      a = denseJs(denseJs(a, w('dense_3', 'kernel'), w('dense_3', 'bias'), 'relu'), w('dense_4', 'kernel'), w('dense_4', 'bias'), 'softmax');
      const d = maxAbsDiff(got.subarray(s * 10, (s + 1) * 10), a);
      assert.ok(d <= 1e-4, `image ${s}: max difference ${d}`);
    }
    x.dispose();
    loaded.layers!.dispose();
  });

  it('mnist_model.keras (Keras 2.15 zip, MLP) matches a plain-JS forward pass to 1e-4', async () => {
    const file = path.join(shared, 'mnist_model.keras');
    const loaded = await loadModel(file);
    assert.deepEqual(loaded.summary.inputShape, [null, 28, 28]);
    assert.deepEqual(loaded.summary.layers.map((l) => l.name), ['flatten', 'dense', 'dense_1', 'dense_2']);
    const entries = unzipSync(new Uint8Array(fs.readFileSync(file)), { filter: (f) => f.name === 'model.weights.h5' });
    const h5 = await Hdf5File.open(entries['model.weights.h5']);
    const raw = readAll(h5, h5.root());
    h5.close();
    const w = (l: string, i: number) => raw.get(`layers/${l}/vars/${i}`)!;
    const x = images();
    const xs = x.dataSync();
    const got = predict(loaded.layers!, x);
    for (let s = 0; s < 3; s++) {
      let a: Float64Array = Float64Array.from(xs.subarray(s * 784, (s + 1) * 784));
      a = denseJs(a, w('dense', 0), w('dense', 1), 'relu');
      a = denseJs(a, w('dense_1', 0), w('dense_1', 1), 'relu');
      a = denseJs(a, w('dense_2', 0), w('dense_2', 1), 'softmax');
      const d = maxAbsDiff(got.subarray(s * 10, (s + 1) * 10), a);
      assert.ok(d <= 1e-4, `image ${s}: max difference ${d}`);
    }
    x.dispose();
    loaded.layers!.dispose();
  });

  it('the bundled CLI (dist/cli.js) prints the summary of mnist_model.h5', { skip: !fs.existsSync(path.join(root, 'dist/cli.js')) && 'dist/cli.js not built (npm run build)' }, () => {
    const r = spawnSync(process.execPath, [path.join(root, 'dist/cli.js'), 'summary', path.join(shared, 'mnist_model.h5'), '--backend', 'wasm'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^dense_3\s+Dense\s+\[\?, 64\]\s+102,464\s+yes$/m);
    assert.match(r.stdout, /Total params: 121,930/);
  });
});

