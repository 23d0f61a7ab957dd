/**
 * ONNX models: the reader's refusals, ONNX Runtime against the TF.js engine
 * on the same weights (every node, 1e-4), the inspector, Score-CAM, and the
 * head fine-tune whose saved .onnx must equal backbone + head computed
 * separately (1e-5).
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { Inspector } from '../../src/engine/inspect/inspector';
import { readOnnxFile } from '../../src/engine/io/onnx';
import { saveLayersModel } from '../../src/engine/io/save';
import { disposeModel, loadModel } from '../../src/engine/model';
import { viewShape } from '../../src/engine/onnx/inspect';
import { decodeModel, encodeModel } from '../../src/engine/onnx/proto';
import { createSession, runtime } from '../../src/engine/onnx/runtime';
import { GraphBuilder, attrs } from '../../src/engine/onnx/write';
import { finetuneOnnx } from '../../src/engine/onnx/finetune';
import { finetune } from '../../src/engine/train/finetune';
import type { TrainProgress, TrainStart } from '../../src/protocol/train';
import { makeStripesDataset, stripesClasses } from '../fixtures/models';
import { twinLabels, twinOnnx, twinPairs, twinTfjs } from '../fixtures/onnx';
import { rejectsWith, setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-onnx-'));
const at = (...p: string[]) => path.join(tmp, ...p);
let twin: tf.LayersModel;
let twinPath = '';

/** A seeded NHWC image batch in [0, 1]. */
function image(n = 1, seed = 3): { data: Float32Array; dims: number[] } {
  let s = seed;
  const data = Float32Array.from({ length: n * 32 * 32 * 3 }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31));
  return { data, dims: [n, 32, 32, 3] };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** NCHW [1, c, h, w] → NHWC values. */
function toNhwc(v: Float32Array, dims: number[]): Float32Array {
  if (dims.length !== 4) return v;
  const [, c, h, w] = dims;
  const out = new Float32Array(v.length);
  for (let k = 0; k < c; k++) for (let p = 0; p < h * w; p++) out[p * c + k] = v[k * h * w + p];
  return out;
}

function writeModel(dir: string, bytes: Uint8Array, name = 'model.onnx'): string {
  fs.mkdirSync(at(dir), { recursive: true });
  const p = at(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

before(async () => {
  await setup();
  twin = twinTfjs();
  twinPath = writeModel('twin', twinOnnx(twin));
  fs.writeFileSync(at('twin', 'labels.txt'), twinLabels.join('\n') + '\n');
});

after(() => {
  twin.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('ONNX models against the TF.js engine', () => {
  it('lists the nodes with op types, shapes, parameters and attributes', async () => {
    const loaded = await loadModel(twinPath);
    try {
      const s = loaded.summary;
      assert.equal(s.format, 'onnx');
      assert.deepEqual(s.inputShape, [null, 32, 32, 3]);
      assert.deepEqual(s.labels, twinLabels);
      assert.equal(s.onnx?.layout, 'NCHW');
      assert.deepEqual(s.layers.map((r) => r.path), twinPairs.map(([o]) => o));
      const conv = s.layers.find((r) => r.path === 'conv1')!;
      assert.equal(conv.className, 'Conv');
      assert.deepEqual(conv.outputShape, [null, 8, 32, 32]);
      assert.equal(conv.params, 8 * 3 * 9 + 8);
      assert.ok(conv.attributes?.includes('pads=[1, 1, 1, 1]'));
      assert.equal(s.layers.find((r) => r.path === 'dw')!.attributes?.includes('group=8'), true);
      assert.equal(s.totalParams, twin.countParams() + 2 /* Clip's min and max */);
    } finally {
      disposeModel(loaded);
    }
  });

  it('agrees with tfjs on every node to 1e-4', async () => {
    const loaded = await loadModel(twinPath);
    try {
      const onnx = loaded.onnx!;
      const x = image(2);
      const names = twinPairs.map(([o]) => onnx.valueOf(o));
      const got = await onnx.values(x, names);
      const layers = [...new Set(twinPairs.map(([, t]) => t))];
      const probe = tf.model({ inputs: twin.inputs, outputs: layers.map((t) => twin.getLayer(t).output as tf.SymbolicTensor) });
      const outs = probe.predict(tf.tensor4d(x.data, [2, 32, 32, 3])) as tf.Tensor[];
      const want = twinPairs.map(([, t]) => outs[layers.indexOf(t)]);
      twinPairs.forEach(([o], i) => {
        const v = got[i];
        const flat = v.dims.length === 4 ? (() => {
          const per = v.dims.slice(1).reduce((a, b) => a * b, 1);
          const out = new Float32Array(v.data.length);
          for (let b = 0; b < 2; b++) out.set(toNhwc(v.data.subarray(b * per, (b + 1) * per), [1, ...v.dims.slice(1)]), b * per);
          return out;
        })() : v.data;
        const d = maxDiff(flat, want[i].dataSync());
        assert.ok(d < 1e-4, `node ${o}: max difference ${d}`);
      });
      tf.dispose(outs);
    } finally {
      disposeModel(loaded);
    }
  });

  it('inspects: predictions, every node in the layer list, maps in [h, w, c], Score-CAM', async () => {
    const loaded = await loadModel(twinPath);
    const inspector = new Inspector();
    try {
      const x = image(1, 9);
      const img = { width: 32, height: 32, data: Uint8Array.from(x.data, (v) => Math.round(v * 255)) };
      const r = await inspector.inspectImage(loaded, img, 'seeded.png', 'zeroOne');
      assert.equal(r.layers.length, twinPairs.length);
      assert.equal(r.probabilities, true);
      const want = twin.predict(tf.div(tf.tensor4d(img.data, [1, 32, 32, 3], 'float32'), 255)) as tf.Tensor;
      const p = want.dataSync();
      assert.equal(r.predictions[0].label, twinLabels[p.indexOf(Math.max(...p))]);
      assert.ok(Math.abs(r.predictions[0].probability - Math.max(...p)) < 1e-4);
      want.dispose();
      const relu = r.layers.find((l) => l.path === 'relu1')!;
      assert.deepEqual(relu.shape, [32, 32, 8]);
      assert.equal(relu.kind, 'map');
      assert.ok(relu.zeros > 0 && relu.zeros < 1);
      const maps = await inspector.layerMaps(twinPath, 'dw', 0);
      assert.equal(maps.kind, 'map');
      assert.equal(maps.channels, 8);
      assert.equal(maps.fullHeight, 16);
      const tfMaps = tf.model({ inputs: twin.inputs, outputs: twin.getLayer('dw').output as tf.SymbolicTensor }).predict(tf.div(tf.tensor4d(img.data, [1, 32, 32, 3], 'float32'), 255)) as tf.Tensor;
      const mins = tf.min(tfMaps, [0, 1, 2]).dataSync();
      maps.stats.forEach((s, c) => assert.ok(Math.abs(s.min - mins[c]) < 1e-4, `channel ${c} min`));
      tfMaps.dispose();
      const cam = await inspector.gradCam(twinPath, 'add', r.predictions[0].index);
      assert.equal(cam.method, 'score-cam');
      assert.equal(cam.heat.length, 32 * 32);
      assert.equal(Math.max(...cam.heat), 255);
      await assert.rejects(inspector.gradCam(twinPath, 'dense', 0), /feature map/);
    } finally {
      inspector.dispose();
      disposeModel(loaded);
    }
  });

  it('keeps only what fits: over the memory budget, nodes are fetched when asked', async () => {
    const { runAllNodes, nodeValue } = await import('../../src/engine/onnx/inspect');
    const loaded = await loadModel(twinPath);
    try {
      const onnx = loaded.onnx!;
      const run = await runAllNodes(onnx, image(1), 40 * 1024);
      assert.equal(run.values.size, 0, 'nothing kept over the budget');
      assert.equal(run.stats.size, twinPairs.length);
      const v = await nodeValue(onnx, run, 'conv1');
      assert.deepEqual(v.dims, [1, 8, 32, 32]);
      const whole = await runAllNodes(onnx, image(1));
      assert.equal(maxDiff(v.data, whole.values.get('conv1')!.data), 0);
      assert.deepEqual(viewShape([1, 8, 1, 1]), { shape: [8], kind: 'vector' });
    } finally {
      disposeModel(loaded);
    }
  });
});

describe('a PyTorch export (committed, with PyTorch\'s own outputs: scripts/onnx/torchFixture.py)', () => {
  const dir = path.resolve(__dirname, '../fixtures/torch');
  it('predicts what PyTorch predicted for the same picture and preprocessing, to 1e-5', async () => {
    const want = JSON.parse(fs.readFileSync(path.join(dir, 'pytorch-outputs.json'), 'utf8')) as { probabilities: number[]; top1: string; normalization: 'zeroOne' };
    const modelPath = path.join(dir, 'tiny-torch.onnx');
    const loaded = await loadModel(modelPath);
    const inspector = new Inspector();
    try {
      assert.equal(loaded.summary.onnx?.producer.startsWith('pytorch'), true);
      assert.ok(loaded.summary.layers.some((r) => r.className === 'Conv' && r.attributes?.includes('group=8')), 'the depthwise conv');
      const r = await inspector.inspect(loaded, path.join(dir, want.normalization === 'zeroOne' ? 'picture.png' : ''), want.normalization, { topK: 5 });
      assert.equal(r.predictions[0].label, want.top1);
      for (const p of r.predictions) assert.ok(Math.abs(p.probability - want.probabilities[p.index]) < 1e-5, `${p.label}: ${p.probability} vs PyTorch ${want.probabilities[p.index]}`);
      // Every node has a row and statistics; shapes come from a run (PyTorch writes no value_info for them).
      assert.equal(r.layers.length, loaded.summary.layers.length);
    } finally {
      inspector.dispose();
      disposeModel(loaded);
    }
  });
});

describe('subgraphs and local functions', () => {
  it('lists an If\'s branches and a local function\'s body as nested nodes, and runs the model', async () => {
    const b = new GraphBuilder('nested');
    const x = b.input('input', [1, 3, 8, 8]);
    b.node('Relu', 'relu', [x]);
    b.node('ReduceMean', 'mean', ['relu'], [attrs.int('keepdims', 0)]);
    b.weight('zero', new Float32Array([0]), []);
    b.node('Greater', 'positive', ['mean', 'zero']);
    const branch = (name: string, op: string) => ({ name, node: [{ name: `${name}_${op.toLowerCase()}`, opType: op, input: ['relu'], output: [`${name}_out`] }], output: [{ name: `${name}_out` }] });
    b.nodes.push({ name: 'choose', opType: 'If', input: ['positive'], output: ['choose'], attribute: [{ name: 'then_branch', type: 5, g: branch('then', 'Identity') }, { name: 'else_branch', type: 5, g: branch('else', 'Neg') }] });
    b.nodes.push({ name: 'local', opType: 'DoubleRelu', domain: 'layerlens.test', input: ['choose'], output: ['local'] });
    b.node('GlobalAveragePool', 'pool', ['local']);
    b.node('Flatten', 'flat', ['pool'], [attrs.int('axis', 1)]);
    b.output('flat', [1, 3]);
    const model = b.model({ opset: 13 });
    model.opsetImport!.push({ domain: 'layerlens.test', version: 1 });
    model.functions = [{ name: 'DoubleRelu', domain: 'layerlens.test', input: ['x'], output: ['y'], opsetImport: [{ domain: '', version: 13 }], node: [{ name: 'inner_relu', opType: 'Relu', input: ['x'], output: ['r'] }, { name: 'inner_add', opType: 'Add', input: ['r', 'r'], output: ['y'] }] } as never];
    const p = writeModel('nested', encodeModel(model));
    const loaded = await loadModel(p);
    try {
      const rows = loaded.summary.layers;
      const choose = rows.find((r) => r.path === 'choose')!;
      assert.equal(choose.isContainer, true);
      assert.deepEqual(rows.filter((r) => r.parent === 'choose').map((r) => r.name), ['then_identity', 'else_neg']);
      assert.deepEqual(rows.filter((r) => r.parent === 'local').map((r) => r.name), ['inner_relu', 'inner_add']);
      assert.ok(rows.filter((r) => r.parent).every((r) => r.inspectable === false && r.depth === 1));
      const out = await loaded.onnx!.predict({ data: Float32Array.from({ length: 192 }, (_, i) => (i % 7) - 2), dims: [1, 8, 8, 3] });
      assert.deepEqual(out.dims, [1, 3]);
    } finally {
      disposeModel(loaded);
    }
  });
});

describe('ONNX files that must be refused', () => {
  const load = (p: string) => loadModel(p).then(disposeModel);

  it('damaged protobuf: one line naming the file', async () => {
    const bytes = twinOnnx(twin);
    const p = writeModel('damaged', bytes.subarray(0, Math.floor(bytes.length / 2)));
    await rejectsWith(load(p), 'not-a-model', /model\.onnx is not a readable ONNX model: its protobuf is damaged \(.*\)\. Re-export/);
    const text = writeModel('text', new TextEncoder().encode('{"this": "is json"}'));
    await assert.rejects(load(text), (e: Error) => !e.message.includes('\n') && /ONNX/.test(e.message));
    await rejectsWith(load(writeModel('empty', new Uint8Array(0))), 'not-a-model', /empty \(0 bytes\)/);
  });

  function externalModel(location: string, length = 8 * 3 * 9 * 4, offset = 0): Uint8Array {
    const m = decodeModel(twinOnnx(twin));
    const w = m.graph!.initializer!.find((t) => t.name === 'conv1.weight')!;
    w.rawData = new Uint8Array(0);
    w.dataLocation = 1;
    w.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }];
    return encodeModel(m);
  }

  it('reads external data inside the model folder, and refuses paths that leave it', async () => {
    const weights = twin.getLayer('conv1').getWeights()[0];
    // The same values as the inline model: external data is the ONNX kernel layout.
    const inline = decodeModel(twinOnnx(twin)).graph!.initializer!.find((t) => t.name === 'conv1.weight')!.rawData!;
    const ok = writeModel('external', externalModel('weights.bin', inline.length, 16));
    fs.writeFileSync(at('external', 'weights.bin'), Buffer.concat([Buffer.alloc(16), Buffer.from(inline)]));
    const read = await readOnnxFile(ok);
    assert.equal(read.inlined, true);
    const loaded = await loadModel(ok);
    const base = await loadModel(twinPath);
    const x = image(1);
    assert.ok(maxDiff((await loaded.onnx!.predict(x)).data, (await base.onnx!.predict(x)).data) < 1e-6);
    disposeModel(loaded);
    disposeModel(base);
    assert.ok(weights.size > 0);

    await rejectsWith(load(writeModel('ext-up', externalModel('../secret.bin'))), 'unsafe-path', /external data path "\.\.\/secret\.bin" of tensor "conv1\.weight" in .*leaves the model folder/);
    await rejectsWith(load(writeModel('ext-abs', externalModel('/etc/passwd'))), 'unsafe-path', /is absolute/);
    fs.writeFileSync(at('outside.bin'), Buffer.alloc(1024));
    const linked = writeModel('ext-link', externalModel('link.bin'));
    fs.symlinkSync(at('outside.bin'), at('ext-link', 'link.bin'));
    await rejectsWith(load(linked), 'unsafe-path', /is a symlink to .*outside the model folder/);
    await rejectsWith(load(writeModel('ext-missing', externalModel('gone.bin'))), 'missing-shard', /external data file gone\.bin is missing next to/);
    const short = writeModel('ext-short', externalModel('short.bin'));
    fs.writeFileSync(at('ext-short', 'short.bin'), Buffer.alloc(10));
    await rejectsWith(load(short), 'shard-size', /only 10 bytes \(truncated\)/);
    await rejectsWith(load(writeModel('ext-len', externalModel('w.bin', 7))), 'shard-size', /needs 864 bytes but its external data is 7 bytes/);
  });

  it('a .onnx or its external data that is a Git LFS pointer (a clone without git lfs pull) is named as one, not "damaged" or "truncated"', async () => {
    const pointer = (size: number) => new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${'ab'.repeat(32)}\nsize ${size}\n`);
    await rejectsWith(load(writeModel('lfs-model', pointer(2397109))), 'not-a-model', /^.*model\.onnx is a Git LFS pointer, not the file itself \(the real file is 2,397,109 bytes\).*git lfs pull/);
    const ext = writeModel('lfs-ext', externalModel('model.onnx.data'));
    fs.writeFileSync(at('lfs-ext', 'model.onnx.data'), pointer(864));
    await rejectsWith(load(ext), 'shard-size', /model\.onnx: external data file model\.onnx\.data is a Git LFS pointer, not the file itself \(the real file is 864 bytes\).*git lfs pull/);
  });

  it('reads only ordinary files: a .onnx or its external data that is a FIFO or a folder is refused, never opened', async () => {
    const mkfifo = (p: string) => spawnSync('mkfifo', [p]).status === 0;
    fs.mkdirSync(at('fifo-model'), { recursive: true });
    if (mkfifo(at('fifo-model', 'model.onnx'))) {
      await rejectsWith(load(at('fifo-model', 'model.onnx')), 'unreadable', /model\.onnx is not a regular file \(a FIFO\)\./);
    }
    fs.mkdirSync(at('dir-model', 'model.onnx'), { recursive: true });
    await rejectsWith(load(at('dir-model', 'model.onnx')), 'unreadable', /model\.onnx is not a regular file \(a folder\)\./);
    const ext = writeModel('ext-fifo', externalModel('pipe.bin'));
    if (mkfifo(at('ext-fifo', 'pipe.bin'))) await rejectsWith(load(ext), 'unreadable', /^pipe\.bin is not a regular file \(a FIFO\)\.$/);
  });

  it('refuses before allocating: tensors claiming more values than a tensor may hold, data of the wrong length', async () => {
    const huge = decodeModel(twinOnnx(twin));
    huge.graph!.initializer!.find((t) => t.name === 'conv1.weight')!.dims = [1 << 20, 1 << 20, 8, 8];
    await rejectsWith(load(writeModel('huge', encodeModel(huge))), 'too-large', /claims \d+ values, more than the 2147483647 a tensor may hold \(refused before allocating\)/);
    const wrong = decodeModel(twinOnnx(twin));
    wrong.graph!.initializer!.find((t) => t.name === 'conv1.weight')!.dims = [8, 3, 3, 4];
    await rejectsWith(load(writeModel('wrong', encodeModel(wrong))), 'shard-size', /tensor "conv1\.weight" \(float32, 288 values\) should hold 1152 bytes but holds 864 \(truncated\)/);
  });

  it('names custom and unknown operators', async () => {
    const custom = decodeModel(twinOnnx(twin));
    custom.graph!.node![2].domain = 'com.example.vision';
    custom.graph!.node![2].opType = 'FancyRelu';
    await rejectsWith(load(writeModel('custom', encodeModel(custom))), 'unknown-layer', /uses custom operator com\.example\.vision::FancyRelu \(node "relu1"\), which ONNX Runtime does not provide/);
    const unknown = decodeModel(twinOnnx(twin));
    unknown.graph!.node![2].opType = 'NotAnOnnxOp';
    await rejectsWith(load(writeModel('unknown', encodeModel(unknown))), 'unknown-layer', /NotAnOnnxOp/);
  });

  it('refuses models that are not image classifiers with one input, clearly', async () => {
    const b = new GraphBuilder('two');
    b.input('a', [1, 4]);
    b.input('b', [1, 4]);
    b.node('Add', 'sum', ['a', 'b']);
    b.output('sum', [1, 4]);
    await rejectsWith(load(writeModel('two-inputs', b.bytes())), 'bad-input', /takes 2 inputs \(a, b\); Layer Lens inspects models with one image input/);
    const v = new GraphBuilder('vec');
    v.input('x', [1, 16]);
    v.node('Relu', 'r', ['x']);
    v.output('r', [1, 16]);
    await rejectsWith(load(writeModel('vector', v.bytes())), 'bad-input', /not an image batch/);
  });
});

describe('damaged ONNX files, seeded (bytes flipped, graphs rewired)', () => {
  it('each either loads or ends in one line naming the file, never an internal error or a crash', async () => {
    const base = twinOnnx(twin);
    let seed = 20261203;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const outcomes: Record<string, number> = {};
    for (let c = 0; c < 60; c++) {
      let bytes: Uint8Array;
      if (c % 2 === 0) {
        bytes = Uint8Array.from(base);
        for (let i = 0, k = 1 + Math.floor(rnd() * 8); i < k; i++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
      } else {
        const m = decodeModel(base);
        const g = m.graph!;
        const node = g.node![Math.floor(rnd() * g.node!.length)];
        const r = rnd();
        if (r < 0.2 && node.attribute?.length) node.attribute[0].ints = [Math.floor(rnd() * 1e9) - 5e8, -1, 0];
        else if (r < 0.4) node.input = [...(node.input ?? []), 'nonexistent'];
        else if (r < 0.55) node.opType = ['Reshape', 'Loop', 'If', 'Gather', 'Resize', 'Expand'][Math.floor(rnd() * 6)];
        else if (r < 0.7) g.initializer![Math.floor(rnd() * g.initializer!.length)].dims = [Math.floor(rnd() * 100), 3];
        else if (r < 0.85) g.input![0].type!.tensorType!.shape!.dim = [{ dimValue: 1 }, { dimValue: 1 + Math.floor(rnd() * 4) }, { dimValue: 1 + Math.floor(rnd() * 64) }, { dimValue: 32 }];
        else g.node!.reverse();
        bytes = encodeModel(m);
      }
      const p = writeModel('fuzz', bytes, `case-${c}.onnx`);
      try {
        disposeModel(await loadModel(p));
        outcomes['loads'] = (outcomes['loads'] ?? 0) + 1;
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'not an EngineError';
        outcomes[code] = (outcomes[code] ?? 0) + 1;
        assert.ok(code !== 'internal' && code !== 'not an EngineError', `case ${c}: ${String(e)}`);
        assert.ok(!(e as Error).message.includes('\n') && (e as Error).message.includes(`case-${c}.onnx`), `case ${c}: ${(e as Error).message}`);
      }
    }
    assert.ok(Object.keys(outcomes).length >= 3, `the cases reach several outcomes: ${JSON.stringify(outcomes)}`);
  });
});

describe('transfer learning on an ONNX backbone', () => {
  it('trains a new head on cached backbone features and saves one .onnx that equals backbone + head to 1e-5', async () => {
    const dataset = makeStripesDataset(at('stripes'), { size: 32, perClass: 12 });
    const progress: TrainProgress[] = [];
    const before = fs.readFileSync(twinPath);
    const result = await finetuneOnnx({
      modelJsonPath: twinPath,
      datasetDir: dataset,
      settings: { epochs: 4, batchSize: 8, learningRate: 0.05, validationFraction: 0.25, seed: 3 },
      frozen: [],
      onProgress: (p) => progress.push(p),
      outDir: at('twin-finetuned'),
    });
    assert.deepEqual(fs.readFileSync(twinPath), before, 'the source model is only read');
    const start = progress.find((p): p is TrainStart => p.type === 'start')!;
    assert.equal(start.embeddingCache, true);
    assert.equal(start.head.cutLayer, 'flatten');
    assert.equal(start.trainableParams, 8 * 3 + 3);
    assert.equal(result.epochsRun, 4);
    assert.deepEqual(fs.readdirSync(result.outputPath).sort(), ['labels.txt', 'metadata.json', 'metrics.csv', 'metrics.json', 'model.onnx']);
    assert.deepEqual(fs.readFileSync(path.join(result.outputPath, 'labels.txt'), 'utf8').trim().split('\n'), stripesClasses);

    // The saved graph: the backbone up to the cut, then Gemm + Softmax with their initializers.
    const saved = decodeModel(fs.readFileSync(result.modelPath!));
    const ops = saved.graph!.node!.map((n) => n.opType);
    assert.deepEqual(ops.slice(-2), ['Gemm', 'Softmax']);
    assert.ok(!saved.graph!.node!.some((n) => n.name === 'dense'), 'the old head is gone');
    assert.equal(saved.graph!.output!.length, 1);
    assert.deepEqual(JSON.parse(saved.metadataProps!.find((e) => e.key === 'labels')!.value!), stripesClasses);

    // backbone (ONNX Runtime, the source model cut at flatten) + head (the saved Gemm's weights, in tf) vs the saved model.
    const kernelT = saved.graph!.initializer!.find((t) => t.name === 'layerlens_head/kernel')!;
    const biasT = saved.graph!.initializer!.find((t) => t.name === 'layerlens_head/bias')!;
    const kernel = new Float32Array(Uint8Array.from(kernelT.rawData!).buffer);
    const bias = new Float32Array(Uint8Array.from(biasT.rawData!).buffer);
    const source = await loadModel(twinPath);
    const reloaded = await loadModel(result.modelPath!);
    try {
      assert.deepEqual(reloaded.summary.labels, stripesClasses);
      const x = image(4, 21);
      const [features] = await source.onnx!.values(x, ['flatten']);
      const expected = tf.tidy(() => tf.softmax(tf.add(tf.matMul(tf.tensor2d(features.data, [4, 8]), tf.tensor2d(kernel, [8, 3])), tf.tensor1d(bias))).dataSync());
      const got = await reloaded.onnx!.predict(x);
      assert.deepEqual(got.dims, [4, 3]);
      const d = maxDiff(got.data, expected);
      assert.ok(d < 1e-5, `saved model vs backbone + head: ${d}`);
    } finally {
      disposeModel(source);
      disposeModel(reloaded);
    }
    // The saved model evaluates on the same seeded split (layer-lens evaluate), as its own training's evaluation did.
    const { evaluateModel } = await import('../../src/engine/train/evaluate');
    const evaluated = await evaluateModel({ modelJsonPath: result.modelPath!, datasetDir: dataset });
    const trained = JSON.parse(fs.readFileSync(path.join(result.outputPath, 'metrics.json'), 'utf8')) as { evaluation?: { accuracy: number; images: unknown[] } };
    assert.equal(evaluated.evaluation.images.length, trained.evaluation?.images.length);
    assert.ok(Math.abs(evaluated.evaluation.accuracy - trained.evaluation!.accuracy) < 1e-9, `${evaluated.evaluation.accuracy} vs ${trained.evaluation!.accuracy}`);
    // The TF.js fine-tune, given an ONNX model, says what it can do instead.
    await rejectsWith(finetune({ modelJsonPath: twinPath, datasetDir: dataset, settings: {}, frozen: [], onProgress: () => undefined }), 'bad-input', /is an ONNX model: .*trains only a new head/);
    // A planned folder that appears while training runs: saved beside it as -2, the one that appeared untouched.
    const appears = at('twin-appears');
    const seen: TrainProgress[] = [];
    const second = await finetuneOnnx({
      modelJsonPath: twinPath,
      datasetDir: dataset,
      settings: { epochs: 1, batchSize: 8, seed: 3 },
      frozen: [],
      outDir: appears,
      onProgress: (p) => {
        seen.push(p);
        if (p.type === 'start') fs.mkdirSync(appears);
      },
    });
    assert.equal(second.outputPath, `${appears}-2`);
    assert.deepEqual(fs.readdirSync(appears), []);
    assert.ok(fs.existsSync(path.join(`${appears}-2`, 'model.onnx')));
    assert.ok(seen.some((p) => p.type === 'warning' && p.message.startsWith(`${appears} appeared while training ran`)));
    // Never over an existing folder.
    await rejectsWith(
      finetuneOnnx({ modelJsonPath: twinPath, datasetDir: dataset, settings: { epochs: 1 }, frozen: [], onProgress: () => undefined, outDir: result.outputPath }),
      'bad-input',
      /already exists; Layer Lens never writes over a folder/,
    );
  });

  it('cuts at a feature map when asked (cutLayer): the head pools it, as GlobalAveragePool + Flatten', async () => {
    const dataset = at('stripes');
    const result = await finetuneOnnx({
      modelJsonPath: twinPath,
      datasetDir: dataset,
      settings: { epochs: 1, batchSize: 16, seed: 5, cutLayer: 'add' },
      frozen: [],
      onProgress: () => undefined,
      outDir: at('twin-cut-add'),
    });
    const saved = decodeModel(fs.readFileSync(result.modelPath!));
    assert.deepEqual(saved.graph!.node!.slice(-4).map((n) => n.opType), ['GlobalAveragePool', 'Flatten', 'Gemm', 'Softmax']);
    const session = await createSession(fs.readFileSync(result.modelPath!), 'saved');
    const ort = runtime();
    const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(2 * 3 * 32 * 32), [2, 3, 32, 32]) });
    const probs = Object.values(out)[0].data as Float32Array;
    assert.ok(Math.abs(probs[0] + probs[1] + probs[2] - 1) < 1e-5);
    await session.release();
  });
});

describe('the writer', () => {
  it('writes attributes ONNX Runtime reads back', async () => {
    const b = new GraphBuilder('pool');
    b.input('x', [1, 1, 4, 4]);
    b.node('MaxPool', 'pool', ['x'], [attrs.ints('kernel_shape', [2, 2]), attrs.ints('strides', [2, 2])]);
    b.output('pool', [1, 1, 2, 2]);
    const s = await createSession(b.bytes(), 'pool');
    const ort = runtime();
    const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from({ length: 16 }, (_, i) => i), [1, 1, 4, 4]) });
    assert.deepEqual(Array.from(out.pool.data as Float32Array), [5, 7, 13, 15]);
    await s.release();
    await saveLayersModel(twin, at('twin-tfjs'));
    assert.ok(fs.existsSync(at('twin-tfjs', 'model.json')));
  });
});
