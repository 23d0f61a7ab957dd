/**
 * Hostile inputs, by name, each with the exact message the user sees: model
 * files, images, datasets, recipes and settings, webview messages and the
 * command line. Nothing may crash, hang, print a stack trace, allocate what a
 * file merely claims, or read outside the model folder. Some of these repeat
 * cases of modelLoading/image/dataset/recipe/webviewApi/cli.test.ts on
 * purpose: this file is the one list of what a stranger's folder can do and
 * what Layer Lens says back. The inputs are made by test/fixtures/hostile.ts
 * into a temporary folder.
 */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { Inspector } from '../../src/engine/inspect/inspector';
import { clipText } from '../../src/engine/io/files';
import { disposeModel, loadModel } from '../../src/engine/model';
import { currentBundles } from '../fixtures/bundles';
import { hostileModelNames, makeHostileModels, type HostileModelName, type HostileModels } from '../fixtures/hostile';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';
import { root, refuses, jsonError, memory, assertNoJump, moved, runCli, type CliRun, hangLimit } from './hostileHelpers';

const refusals: { name: HostileModelName; code: string; message: (at: (name: HostileModelName) => string, h: HostileModels) => string }[] = [
  {
    name: 'truncated',
    code: 'not-json',
    message: (at) => `${at('truncated')} is not valid JSON (${clipText(jsonError(fs.readFileSync(at('truncated'), 'utf8')), 200)}); the file may be truncated or hand-edited.`,
  },
  {
    name: 'not-a-model',
    code: 'not-a-model',
    message: (at) =>
      `${at('not-a-model')} is JSON but not a TF.js model: it has no "modelTopology" object. Layer Lens opens model.json files written by tfjs (model.save) or tensorflowjs_converter.`,
  },
  {
    name: 'json-array',
    code: 'not-a-model',
    message: (at) =>
      `${at('json-array')} is JSON but not a TF.js model: it has no "modelTopology" object. Layer Lens opens model.json files written by tfjs (model.save) or tensorflowjs_converter.`,
  },
  { name: 'empty', code: 'not-json', message: (at) => `${at('empty')} is empty (0 bytes); the export may have been interrupted.` },
  { name: 'directory', code: 'not-a-model', message: (at) => `${at('directory')} is not a file.` },
  { name: 'depth-bomb', code: 'too-deep', message: (at) => `${at('depth-bomb')} nests deeper than 500 levels; no real model does, so it was not parsed.` },
  {
    name: 'heap-bomb',
    code: 'too-large',
    message: (at) => `${at('heap-bomb')} holds more than 4,000,000 JSON objects and arrays; a real model's has a few thousand, so it was not parsed.`,
  },
  {
    name: 'huge-200mb',
    code: 'too-large',
    message: (at) =>
      `${at('huge-200mb')} is 200 MB; a TF.js model.json holds only the topology and weights manifest (a few MB at most), so this is not one Layer Lens will read.`,
  },
  {
    name: 'shape-bomb',
    code: 'bad-weights',
    message: (at) => `${at('shape-bomb')}: weight "huge" claims shape [100000, 100000, 100000], more than 2147483647 values; refused before allocating.`,
  },
  { name: 'total-bomb', code: 'bad-weights', message: (at) => `${at('total-bomb')}: the manifest describes 12.0 GB of weights; refused before allocating.` },
  {
    name: 'topology-bomb',
    code: 'bad-weights',
    message: () =>
      'model.json: layer "conv1" asks for a weight of shape [3, 3, 3, 10000000] (270000000 values), far more than the 451 values its weights manifest holds; the topology does not match its weights (refused before allocating).',
  },
  {
    name: 'dtype-float64',
    code: 'bad-weights',
    message: (at) => `${at('dtype-float64')}: weight "conv1/kernel" has dtype "float64", which Layer Lens cannot load (float32, int32 or bool).`,
  },
  {
    name: 'dtype-string',
    code: 'bad-weights',
    message: (at) => `${at('dtype-string')}: weight "conv1/kernel" has dtype "string", which Layer Lens cannot load (float32, int32 or bool).`,
  },
  {
    name: 'dtype-int32-mismatch',
    code: 'bad-weights',
    message: () =>
      'model.json: weight "conv1/kernel" is listed as int32 in the weights manifest, but layer "conv1" stores float32 values; the manifest does not match the model. Re-export the model.',
  },
  {
    name: 'shape-mismatch',
    code: 'bad-weights',
    message: () =>
      'model.json: weight "conv1/kernel" has shape [3, 3, 4, 3] in the weights manifest, but layer "conv1" needs [3, 3, 3, 4]; the manifest does not match the model. Re-export the model.',
  },
  { name: 'negative-dim', code: 'bad-weights', message: (at) => `${at('negative-dim')}: weight "conv1/kernel" has an invalid shape [-3, 3, 3, 4].` },
  {
    name: 'shard-missing',
    code: 'missing-shard',
    message: (at) => `weights shard group1-shard2of3.bin is missing next to ${at('shard-missing')} (the manifest lists 3 shards in group 1).`,
  },
  {
    name: 'shard-short',
    code: 'shard-size',
    message: (at) => `the 3 shards of group 1 are 1796 bytes but ${at('shard-short')} describes 1804 bytes of weights (truncated); re-export the model or restore the shard.`,
  },
  {
    name: 'shard-long',
    code: 'shard-size',
    message: (at) => `weights shard weights.bin is 1820 bytes but ${at('shard-long')} describes 1804 bytes of weights (extra data); re-export the model or restore the shard.`,
  },
  {
    name: 'shard-listed-twice',
    code: 'not-a-model',
    message: (at) => `${at('shard-listed-twice')} lists weights shard group1-shard1of3.bin more than once; the manifest is damaged. Re-export the model.`,
  },
  {
    name: 'unknown-layer',
    code: 'unknown-layer',
    message: () => 'model.json uses layer class FancyNorm, which tfjs-layers does not provide (a custom layer?). Register it in tfjs or replace it before exporting.',
  },
  {
    name: 'custom-layer-nested',
    code: 'unknown-layer',
    message: () => 'model.json uses layer class MyDepthwiseConv, which tfjs-layers does not provide (a custom layer?). Register it in tfjs or replace it before exporting.',
  },
  {
    name: 'lambda',
    code: 'unsupported-layer',
    message: () => 'model.json uses Lambda (holds Python code, which cannot be loaded outside Python); replace it with built-in layers before exporting.',
  },
  {
    name: 'class-toString',
    code: 'unknown-layer',
    message: () => 'model.json uses layer class toString, which tfjs-layers does not provide (a custom layer?). Register it in tfjs or replace it before exporting.',
  },
  {
    name: 'weight-named-proto',
    code: 'bad-weights',
    message: (at) => `${at('weight-named-proto')}: a weight is named "__proto__", which is not a weight name; the manifest is damaged.`,
  },
  {
    name: 'quantization-toString',
    code: 'bad-weights',
    message: (at) => `${at('quantization-toString')}: weight "conv1/kernel" has an unknown quantization (expected uint8, uint16 or float16).`,
  },
  { name: 'path-absolute', code: 'unsafe-path', message: (_at, h) => `weights path "${h.outside}" in model.json is absolute; ${moved}` },
  { name: 'path-dotdot', code: 'unsafe-path', message: () => `weights path "../outside.bin" in model.json leaves the model folder (..); ${moved}` },
  {
    name: 'path-symlink',
    code: 'unsafe-path',
    message: (_at, h) => `weights path "weights.bin" in model.json is a symlink to ${fs.realpathSync(h.outside)}, outside the model folder; ${moved}`,
  },
  { name: 'path-url', code: 'unsafe-path', message: () => `weights path "file:///etc/passwd" in model.json is a URL; ${moved}` },
  { name: 'path-windows', code: 'unsafe-path', message: () => `weights path "..\\..\\outside.bin" in model.json leaves the model folder (..); ${moved}` },
  {
    name: 'path-percent',
    code: 'missing-shard',
    message: (at) => `weights shard %2e%2e/outside.bin is missing next to ${at('path-percent')} (the manifest lists 1 shard in group 1).`,
  },
  {
    name: 'folder-symlink-loop',
    code: 'unsafe-path',
    message: (at) => `${at('folder-symlink-loop')} is inside a symlink loop; fix the links that point back into the folder.`,
  },
  {
    name: 'graph-malformed',
    code: 'not-a-model',
    message: () => 'model.json: the graph model could not be built (the topology is malformed: a field tfjs needs is missing or has the wrong type).',
  },
  {
    name: 'layer-chain-5000',
    code: 'not-a-model',
    message: () => 'model.json: tfjs built the model but cannot describe it (its layer graph is too deep for tfjs to build: the call stack overflowed).',
  },
  {
    name: 'inbound-never-called',
    code: 'not-a-model',
    message: () => `model.json: the model's graph cannot be rebuilt: layer "dw1" takes its input from call 0 of layer "Conv1_relu", which is never called. Its layer list is damaged; re-export the model.`,
  },
  {
    name: 'top-is-a-layer',
    code: 'not-a-model',
    message: () => 'model.json: its modelTopology is a BatchNormalization, not a model (Sequential, Model or Functional); the file is damaged. Re-export the model.',
  },
  {
    name: 'weight-listed-twice',
    code: 'not-a-model',
    message: (at) => `${at('weight-listed-twice')}: the weights manifest lists weight "conv1/bias" twice; the manifest is damaged. Re-export the model.`,
  },
  {
    name: 'layers-same-name',
    code: 'not-a-model',
    message: () => 'model.json: the weight "conv1/kernel" is made by two layers named "conv1"; layer names must be unique. Re-export the model.',
  },
];

const nanWarnings = ['weight "conv1/kernel" holds 1 NaN and 1 infinite values of 108', 'weight "bn1/gamma" holds 0 NaN and 1 infinite values of 4'];

let h: HostileModels;
const at = (name: HostileModelName) => h.models[name];

describe('hostile model files', () => {
  before(async () => {
    await setup();
    h = makeHostileModels(path.join(root, 'models'));
  });

  it('covers every hostile model the generator makes', () => {
    const tested = new Set<string>([...refusals.map((r) => r.name), 'nan-inf', 'input-100000px']);
    assert.deepEqual(hostileModelNames.filter((n) => !tested.has(n)), []);
  });

  for (const r of refusals) {
    it(`${r.name}: refused with one clear message`, { timeout: hangLimit }, async () => {
      const before = memory();
      await refuses(loadModel(at(r.name)), r.code, r.message(at, h));
      assertNoJump(before, r.name);
    });
  }

  it('huge-200mb: refused from its size alone; not a byte of it is read', async () => {
    const p = fs.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
    const opened: string[] = [];
    const saved = { readFile: p['readFile'], open: p['open'] };
    for (const name of ['readFile', 'open'] as const) {
      p[name] = (...a: unknown[]) => {
        opened.push(String(a[0]));
        return saved[name].apply(fs.promises, a);
      };
    }
    try {
      await assert.rejects(loadModel(at('huge-200mb')));
    } finally {
      Object.assign(p, saved);
    }
    assert.deepEqual(opened, []);
    assert.ok(fs.statSync(at('huge-200mb')).blocks * 512 < 1048576, 'the fixture itself is sparse');
  });

  it('nan-inf: loads, and warns saying which weights and how many values', async () => {
    const loaded = await loadModel(at('nan-inf'));
    try {
      assert.deepEqual(loaded.summary.warnings, nanWarnings);
      // The summary is what the Models view ("2 warning(s): …"), the log and the inspector show.
      assert.equal(loaded.summary.totalParams, 451);
    } finally {
      disposeModel(loaded);
    }
  });

  it('input-100000px: loads (nothing is allocated for an input), but inspecting refuses before allocating', { timeout: hangLimit }, async () => {
    const loaded = await loadModel(at('input-100000px'));
    const before = memory();
    try {
      await refuses(
        new Inspector().inspect(loaded, fixture('images', 'rgb.png'), 'zeroOne'),
        'bad-input',
        'the model input size 100000x100000 is over the 4096x4096 pixels Layer Lens feeds a model; the model.json declares an input far larger than any image model uses.',
      );
      assertNoJump(before, 'input-100000px');
    } finally {
      disposeModel(loaded);
    }
  });

  it('no failed load leaves a tensor behind', async () => {
    const before = tf.memory().numTensors;
    for (const r of refusals) await loadModel(at(r.name)).catch(() => undefined);
    assert.equal(tf.memory().numTensors, before);
  });
});

// ---------------------------------------------------------------------------

/** `fn` over `items`, `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

describe('the command line on hostile input (node cli.js, built from the current sources)', () => {
  const usage: [string[], string][] = [
    [['finetune'], 'finetune takes a model path and a dataset folder.'],
    [['finetune', 'm.json', 'data', '--epochs', '0'], '--epochs 0: must be at least 1.'],
    [['finetune', 'm.json', 'data', '--epochs', 'abc'], '--epochs abc: not a number.'],
    [['finetune', 'm.json', 'data', '--lr=-1'], '--lr -1: must be more than 0.'],
    [['finetune', fixture('tiny-cnn', 'model.json'), 'data', '--augment', 'rotate=999'], '--augment: rotate=999 is out of range; use 0 to 180 degrees.'],
    [['inspect', 'm.json'], 'inspect needs --image <file>.'],
    [['inspect', 'm.json', '--image', 'x.png', '--out', 'o', '--colormap', 'rainbow'], '--colormap must be viridis, magma, gray (got "rainbow").'],
  ];
  let cli = '';
  const runs = new Map<string, CliRun>();
  before(async () => {
    await setup();
    h ??= makeHostileModels(path.join(root, 'models'));
    cli = path.join(await currentBundles(), 'cli.js');
    // Every run up front, three at a time: each is a fresh Node loading tfjs, the slow part of this file.
    const data = makeStripesDataset(path.join(root, 'cli-data'), { perClass: 2 });
    const jobs: [string, string[]][] = [
      ...refusals.map((r): [string, string[]] => [r.name, ['summary', at(r.name)]]),
      ['nan-inf', ['summary', at('nan-inf')]],
      ...usage.map(([args]): [string, string[]] => [args.join(' '), args]),
      ['finetune topology-bomb', ['finetune', at('topology-bomb'), data, '--epochs', '1']],
    ];
    const results = await pool(jobs, 3, ([, args]) => runCli(cli, args));
    jobs.forEach(([name], i) => runs.set(name, results[i]));
  });

  for (const r of refusals) {
    it(`summary ${r.name}: exit 1, one line on stderr, nothing on stdout`, () => {
      const run = runs.get(r.name)!;
      assert.equal(run.signal, null, `killed after ${Math.round(run.ms)} ms: it hung`);
      assert.equal(run.stderr, `layer-lens: ${r.message(at, h)}\n`);
      assert.equal(run.stdout, '');
      assert.equal(run.code, 1);
    });
  }

  it('summary nan-inf: exit 0, and the table ends with the warnings', () => {
    const run = runs.get('nan-inf')!;
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.trimEnd().split('\n').slice(-2), nanWarnings.map((w) => `Warning: ${w}`));
  });

  for (const [args, message] of usage) {
    it(`bad arguments (${args.map((a) => path.basename(a)).join(' ')}): the reason, the usage, exit 2, no stack trace`, () => {
      const run = runs.get(args.join(' '))!;
      assert.equal(run.code, 2);
      assert.equal(run.stderr.split('\n')[0], `layer-lens: ${message}`);
      assert.match(run.stderr, /\nUsage: layer-lens <command> \[options\]\n/);
      assert.doesNotMatch(run.stderr, /\n\s+at /);
    });
  }

  it('finetune with a hostile model ends in one line too', () => {
    const run = runs.get('finetune topology-bomb')!;
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `layer-lens: ${refusals.find((r) => r.name === 'topology-bomb')!.message(at, h)}\n`);
  });
});
