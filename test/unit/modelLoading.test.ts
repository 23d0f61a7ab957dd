import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { currentBackend } from '../../src/engine/backend';
import { loadModel } from '../../src/engine/model';
import { fixture, nestedModel, tinyCnn } from '../fixtures/models';
import { rejectsWith, setup } from './helpers';

const tmShared = path.resolve(__dirname, '../../../shared/fixtures/teachable-machine-leaves/model.json');

describe('model loading', () => {
  before(setup);

  it('runs on the wasm backend', () => {
    assert.equal(currentBackend()?.name, 'wasm');
  });

  for (const name of ['tiny-cnn', 'tiny-cnn-sharded']) {
    it(`loads ${name} with weights identical to the model that wrote it`, async () => {
      const loaded = await loadModel(fixture(name, 'model.json'));
      const reference = tinyCnn();
      const x = tf.randomUniform([2, 16, 16, 3], 0, 1, 'float32', 5);
      const a = (loaded.layers!.predict(x) as tf.Tensor).dataSync();
      const b = (reference.predict(x) as tf.Tensor).dataSync();
      assert.deepEqual(Array.from(a), Array.from(b));
      assert.equal(loaded.summary.totalParams, 451);
      assert.equal(loaded.summary.trainableParams, 443);
      assert.deepEqual(
        loaded.summary.layers.map((l) => l.name),
        ['conv1', 'bn1', 'pool1', 'conv2', 'gap', 'head'],
      );
      reference.dispose();
      loaded.layers!.dispose();
    });
  }

  it('reads labels and preprocessing from metadata.json', async () => {
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    assert.deepEqual(loaded.summary.labels, ['circle', 'square', 'triangle']);
    assert.equal(loaded.summary.normalization, 'zeroOne');
    loaded.layers!.dispose();
  });

  it('dequantises uint8 weights to within one quantisation step', async () => {
    const q = await loadModel(fixture('tiny-cnn-quantized', 'model.json'));
    const f = await loadModel(fixture('tiny-cnn', 'model.json'));
    const wq = q.layers!.getLayer('conv1').getWeights()[0].dataSync();
    const wf = f.layers!.getLayer('conv1').getWeights()[0].dataSync();
    let max = -Infinity;
    let min = Infinity;
    for (const v of wf) {
      max = Math.max(max, v);
      min = Math.min(min, v);
    }
    const step = (max - min) / 255;
    for (let i = 0; i < wf.length; i++) assert.ok(Math.abs(wq[i] - wf[i]) <= step / 2 + 1e-6, `weight ${i}`);
    q.layers!.dispose();
    f.layers!.dispose();
  });

  it('lists the layers of nested models with their paths and depth', async () => {
    const loaded = await loadModel(fixture('nested', 'model.json'));
    const rows = loaded.summary.layers;
    assert.deepEqual(
      rows.map((r) => `${'  '.repeat(r.depth)}${r.path}`),
      [
        'features',
        '  features/backbone',
        '    features/backbone/input_1',
        '    features/backbone/Conv1',
        '    features/backbone/bn_Conv1',
        '    features/backbone/Conv1_relu',
        '    features/backbone/dw1',
        '    features/backbone/gap',
        'head_seq',
        '  head_seq/dense_1',
        '  head_seq/dense_2',
      ],
    );
    assert.equal(rows.find((r) => r.name === 'backbone')?.isContainer, true);
    assert.equal(loaded.summary.normalization, 'minusOneOne', 'Teachable Machine metadata means [-1, 1] pixels');
    const reference = nestedModel();
    const x = tf.randomUniform([1, 16, 16, 3], -1, 1, 'float32', 9);
    assert.deepEqual(Array.from((loaded.layers!.predict(x) as tf.Tensor).dataSync()), Array.from((reference.predict(x) as tf.Tensor).dataSync()));
    reference.dispose();
    loaded.layers!.dispose();
  });

  it('loads a graph model for inference and lists its ops', async () => {
    const loaded = await loadModel(fixture('graph', 'model.json'));
    assert.equal(loaded.summary.format, 'graph');
    assert.deepEqual(
      loaded.summary.layers.map((l) => l.className),
      ['Placeholder', 'Conv2D', 'Relu', 'Mean', 'MatMul', 'Softmax'],
    );
    const y = loaded.graph!.predict(tf.ones([1, 8, 8, 3])) as tf.Tensor;
    assert.deepEqual(y.shape, [1, 2]);
    const s = y.dataSync();
    assert.ok(Math.abs(s[0] + s[1] - 1) < 1e-5);
    loaded.graph!.dispose();
  });

  it('loads a real Teachable Machine export and lists every layer of its nested MobileNet', { skip: !fs.existsSync(tmShared) && 'no ../shared/fixtures (not in this clone)' }, async () => {
    const loaded = await loadModel(tmShared);
    const s = loaded.summary;
    assert.deepEqual(s.labels, ['healthy leaf', 'diseased leaf']);
    assert.equal(s.normalization, 'minusOneOne');
    assert.deepEqual(s.inputShape, [null, 224, 224, 3]);
    const inner = s.layers.filter((l) => l.parent === 'sequential_5/model2');
    assert.ok(inner.length > 150, `nested MobileNet has ${inner.length} layers`);
    assert.ok(inner.some((l) => l.className === 'DepthwiseConv2D'));
    assert.equal(s.totalParams, s.layers.filter((l) => l.depth === 0).reduce((a, l) => a + l.params, 0));
    const y = loaded.layers!.predict(tf.zeros([1, 224, 224, 3])) as tf.Tensor;
    assert.deepEqual(y.shape, [1, 2]);
    loaded.layers!.dispose();
  });
});

describe('model loading failures', () => {
  before(setup);
  const bad = (name: string) => fixture('bad', name, 'model.json');

  it('truncated model.json', () => rejectsWith(loadModel(bad('truncated')), 'not-json', /model\.json is not valid JSON \(.*\); the file may be truncated/));
  it('empty model.json', () => rejectsWith(loadModel(bad('empty')), 'not-json', /is empty \(0 bytes\)/));
  it('JSON that is not a model', () => rejectsWith(loadModel(bad('not-a-model')), 'not-a-model', /is JSON but not a TF\.js model: it has no "modelTopology"/));
  it('missing file', () => rejectsWith(loadModel(fixture('bad', 'nope', 'model.json')), 'not-found', /does not exist/));
  it('missing shard, named', () =>
    rejectsWith(loadModel(bad('missing-shard')), 'missing-shard', /^weights shard group1-shard2of3\.bin is missing next to .*model\.json \(the manifest lists 3 shards in group 1\)\.$/));
  it('short shard', () => rejectsWith(loadModel(bad('short-shard')), 'shard-size', /the 3 shards of group 1 are 1796 bytes but .* describes 1804 bytes of weights \(truncated\)/));
  it('long shard', () => rejectsWith(loadModel(bad('long-shard')), 'shard-size', /weights shard weights\.bin is 1820 bytes but .* describes 1804 bytes of weights \(extra data\)/));
  it('unknown layer class, named', () => rejectsWith(loadModel(bad('unknown-layer')), 'unknown-layer', /uses layer class FancyNorm, which tfjs-layers does not provide/));
  it('Lambda layer', () => rejectsWith(loadModel(bad('lambda')), 'unsupported-layer', /uses Lambda \(holds Python code/));
  it('Keras file', () => rejectsWith(loadModel(fixture('bad', 'keras', 'model.h5')), 'keras-file', /is a Keras file; .*tensorflowjs_converter --input_format keras model\.h5 out\//));
  it('depth bomb', () => rejectsWith(loadModel(bad('depth-bomb')), 'too-deep', /nests deeper than 500 levels/));
  it('allocation bomb is refused before allocating', () =>
    rejectsWith(loadModel(bad('allocation-bomb')), 'bad-weights', /weight "huge" claims shape \[100000, 100000, 100000\], .*refused before allocating/));
});

describe('the model folder boundary', () => {
  before(setup);

  /** Records every path opened through fs.promises while `fn` runs. */
  async function recordOpens(fn: () => Promise<unknown>): Promise<string[]> {
    const seen: string[] = [];
    const p = fs.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
    const names = ['readFile', 'open', 'stat', 'lstat', 'realpath', 'access'] as const;
    const saved = names.map((n) => p[n]);
    names.forEach((n, i) => {
      p[n] = (...args: unknown[]) => {
        seen.push(`${n} ${String(args[0])}`);
        return saved[i].apply(fs.promises, args);
      };
    });
    try {
      await fn().catch(() => undefined);
    } finally {
      names.forEach((n, i) => (p[n] = saved[i]));
    }
    return seen;
  }

  const cases: [string, RegExp][] = [
    ['dotdot', /weights path "\.\.\/outside\.bin" in model\.json leaves the model folder \(\.\.\)/],
    ['absolute', /weights path ".*outside\.bin" in model\.json is absolute/],
    ['symlink', /weights path "weights\.bin" in model\.json is a symlink to .*outside\.bin, outside the model folder/],
  ];
  for (const [name, pattern] of cases) {
    it(`refuses a ${name} weights path and reads nothing outside the folder`, async () => {
      const modelJson = fixture('bad', 'escapes', name, 'model.json');
      await rejectsWith(loadModel(modelJson), 'unsafe-path', pattern);
      const opened = await recordOpens(() => loadModel(modelJson));
      const folder = path.dirname(modelJson);
      const reads = opened.filter((o) => o.startsWith('readFile') || o.startsWith('open'));
      assert.ok(reads.length > 0, 'model.json itself was read');
      for (const o of reads) {
        const p = o.slice(o.indexOf(' ') + 1);
        assert.ok(p.startsWith(folder + path.sep), `read outside the model folder: ${o}`);
      }
      assert.ok(!opened.some((o) => o.endsWith('outside.bin') && !o.startsWith('realpath')), `touched outside.bin: ${opened.join(', ')}`);
    });
  }
});

describe('Git LFS pointers in place of model files', () => {
  before(setup);
  const pointer = (size: number) => `version https://git-lfs.github.com/spec/v1\noid sha256:${'ab'.repeat(32)}\nsize ${size}\n`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-lfs-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names a weights shard that is an LFS pointer, with the fix', async () => {
    const m = path.join(dir, 'shard');
    fs.cpSync(fixture('tiny-cnn'), m, { recursive: true });
    fs.writeFileSync(path.join(m, 'weights.bin'), pointer(fs.statSync(fixture('tiny-cnn', 'weights.bin')).size));
    await rejectsWith(loadModel(path.join(m, 'model.json')), 'shard-size', /weights shard weights\.bin is a Git LFS pointer, not the file itself \(the real file is 1,804 bytes\).*git lfs pull/);
  });

  it('names a model.json that is an LFS pointer', async () => {
    const m = path.join(dir, 'json');
    fs.mkdirSync(m);
    fs.writeFileSync(path.join(m, 'model.json'), pointer(92000));
    await rejectsWith(loadModel(path.join(m, 'model.json')), 'not-json', /model\.json is a Git LFS pointer.*git lfs pull/);
  });

  for (const ext of ['h5', 'keras']) {
    it(`names a .${ext} file that is an LFS pointer`, async () => {
      const f = path.join(dir, `cnn.${ext}`);
      fs.writeFileSync(f, pointer(422164));
      await rejectsWith(loadModel(f), 'keras-file', new RegExp(`cnn\\.${ext} is a Git LFS pointer, not the file itself \\(the real file is 422,164 bytes\\).*\`git lfs pull\``));
    });
  }
});
