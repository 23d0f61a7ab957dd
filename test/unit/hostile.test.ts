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
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EngineError } from '../../src/engine/errors';
import { decodeImage, readImageFile } from '../../src/engine/image';
import { Inspector } from '../../src/engine/inspect/inspector';
import { clipText } from '../../src/engine/io/files';
import { disposeModel, loadModel } from '../../src/engine/model';
import { parseRecipe, readRecipe, writeRecipe } from '../../src/engine/recipe';
import { scanDataset, splitDataset } from '../../src/engine/train/dataset';
import { finetune } from '../../src/engine/train/finetune';
import type { LayerRow } from '../../src/protocol/model';
import { defaultRecipe } from '../../src/protocol/recipe';
import { checkWebviewMessage } from '../../src/protocol/webviewApi';
import { currentBundles } from '../fixtures/bundles';
import { kerasFuzzSpecs } from '../fixtures/fuzzKeras';
import { gray8Pixel, grayAlphaPixel, hostileModelNames, makeHostileImages, makeHostileModels, manyClassesDataset, repoRoot, rgb16Pixel, rgbaPixel, solidPng, type HostileImageName, type HostileModelName, type HostileModels } from '../fixtures/hostile';
import { hostileKerasNames, makeHostileKeras, type HostileKerasName } from '../fixtures/hostileKeras';
import { kerasWeights, writeKerasH5 } from '../fixtures/keras';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-hostile-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Asserts that `p` rejects with an EngineError of exactly this code and message. */
async function refuses(p: Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

function refusesSync(fn: () => unknown, code: string, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

/** V8's own words for why a text is not JSON (they differ between Node versions). */
function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('valid JSON');
}

/** Memory the process holds: JS heap, buffers, and the wasm backend's heap (which never shrinks). */
function memory(): { rss: number; arrayBuffers: number; wasm: number } {
  const m = process.memoryUsage();
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.byteLength ?? 0;
  return { rss: m.rss, arrayBuffers: m.arrayBuffers, wasm };
}

function assertNoJump(before: ReturnType<typeof memory>, what: string): void {
  const now = memory();
  const mb = (n: number) => Math.round(n / 1048576);
  assert.ok(now.wasm - before.wasm < 64 * 1048576, `${what}: wasm heap grew by ${mb(now.wasm - before.wasm)} MB`);
  assert.ok(now.arrayBuffers - before.arrayBuffers < 64 * 1048576, `${what}: buffers grew by ${mb(now.arrayBuffers - before.arrayBuffers)} MB`);
  assert.ok(now.rss - before.rss < 256 * 1048576, `${what}: the process grew by ${mb(now.rss - before.rss)} MB`);
}

const moved = "weight files must sit in the model's folder. Move the shard next to model.json and list it by file name.";

/** Every hostile model.json that must be refused, with the code and exact message. */
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
    it(`${r.name}: refused with one clear message`, { timeout: 30_000 }, async () => {
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

  it('input-100000px: loads (nothing is allocated for an input), but inspecting refuses before allocating', { timeout: 30_000 }, async () => {
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

/** Hostile Keras files, each found by the fuzzer's h5 and keras kinds, with the code and exact message. */
const kerasRefusals: { name: HostileKerasName; code: string; message: (file: string) => string }[] = [
  {
    // libhdf5's error stack used to leak through as "Internal error in the compute worker: HDF5-DIAG: Error detected in HDF5 (2.0.0): ..." (many lines).
    name: 'h5-damaged-header',
    code: 'keras-file',
    message: (f) =>
      `${f} is damaged: reading "model_weights/conv" failed (bad object header version number). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-damaged-header.h5 out/" and open out/model.json.`,
  },
  {
    // Was a hang of the compute worker (libhdf5 never returned), ended only by the load time limit, losing every loaded model.
    name: 'h5-heap-loop',
    code: 'keras-file',
    message: (f) =>
      `${f} is damaged: reading the attribute "model_config" of the root group failed (libhdf5 was still reading after 5 s; its structures may point round in a loop). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-heap-loop.h5 out/" and open out/model.json.`,
  },
  {
    // Soft links are not followed (Keras never writes them): one pointing at an ancestor made the reader walk an endless tree.
    name: 'h5-link-loop',
    code: 'bad-weights',
    message: (f) => `${f}: weight "d1/kernel:0" of layer "d1" is listed in the file but its data is missing (no dataset model_weights/d1/d1/kernel:0).`,
  },
  {
    // The link is not followed: h5wasm sees only its own in-memory copy of the file, never /etc/passwd.
    name: 'h5-external-link',
    code: 'bad-weights',
    message: (f) => `${f}: weight "d1/kernel:0" of layer "d1" is listed in the file but its data is missing (no dataset model_weights/d1/d1/kernel:0).`,
  },
  {
    // Was a hang: tfjs re-queued the call for ever, and only the load time limit ended it (restarting the worker).
    name: 'keras-call-never-made',
    code: 'not-a-model',
    message: (f) =>
      `${f}: the model's graph cannot be rebuilt: layer "cat" takes its input from call 100000 of layer "add", which is called only 1 time. Its layer list is damaged; save the model again from Keras.`,
  },
  {
    // A size that is no whole number printed as NaN ("a weight of shape [NaN, 4] (NaN values)").
    name: 'keras-units-a-list',
    code: 'not-a-model',
    message: (f) => `${f}: layer "d1" asks for a weight of shape [27, [4]], which is not a shape; its config is damaged. Save the model again from Keras.`,
  },
  {
    // Printed tfjs's "Cannot read properties of undefined (reading 'forEach')".
    name: 'h5-config-missing-field',
    code: 'not-a-model',
    message: (f) =>
      `${f}: tfjs could not build the Keras model from its config (the config is malformed: a field tfjs needs is missing or has the wrong type). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-config-missing-field.h5 out/" and open out/model.json.`,
  },
  {
    // Printed the control characters raw, and left one tensor (the weight's initial value) in the worker on every try.
    name: 'h5-layer-name-control-chars',
    code: 'not-a-model',
    message: (f) =>
      `${f}: tfjs could not build the Keras model from its config (Not a valid tensor name: 'd1 \\u0000\\u001b[31m/kernel'). If Keras opens it, convert it with "tensorflowjs_converter --input_format keras h5-layer-name-control-chars.h5 out/" and open out/model.json.`,
  },
  {
    // Was allowed: the build budget trusted dataset shapes, and a chunked dataset never written claims 2^40 values in a few bytes.
    name: 'h5-unwritten-dataset-bomb',
    code: 'bad-weights',
    message: (f) =>
      `${f}: layer "d1" asks for a weight of shape [27, 50000000] (1350000000 values), far more than the ${fs.statSync(f).size} weight values the file holds; the config does not match its weights (refused before allocating).`,
  },
];

describe('hostile Keras files (.h5 and .keras)', () => {
  let k: Record<HostileKerasName, string>;
  before(async () => {
    await setup();
    k = await makeHostileKeras(path.join(root, 'keras'));
  });

  it('covers every hostile Keras file the generator makes', () => {
    const loads = ['keras-initializer-constructor', 'keras-layer-called-twice'];
    assert.deepEqual(hostileKerasNames.filter((n) => !kerasRefusals.some((r) => r.name === n) && !loads.includes(n)), []);
  });

  it('keras-initializer-constructor: loads, and warns that the initializer "constructor" was left out (it crashed with "text.slice is not a function")', async () => {
    const loaded = await loadModel(k['keras-initializer-constructor']);
    try {
      assert.deepEqual(loaded.summary.warnings, ['layer "d1": the initializer constructor does not exist in tfjs and was left out (it only matters for training new weights)']);
    } finally {
      disposeModel(loaded);
    }
  });

  it('keras-layer-called-twice: loads, and unloading frees every weight (two tensors were left per load)', async () => {
    const before = tf.memory().numTensors;
    const loaded = await loadModel(k['keras-layer-called-twice']);
    disposeModel(loaded);
    assert.equal(tf.memory().numTensors, before);
  });

  for (const r of kerasRefusals) {
    it(`${r.name}: refused with one clear message`, { timeout: 30_000 }, async () => {
      await refuses(loadModel(k[r.name]), r.code, r.message(k[r.name]));
    });
  }

  it('no failed Keras load leaves a tensor behind', { timeout: 30_000 }, async () => {
    const before = tf.memory().numTensors;
    // (Not the heap loop again: it only costs its 5 s, and is loaded again below.)
    for (const r of kerasRefusals.filter((r) => r.name !== 'h5-heap-loop')) await loadModel(k[r.name]).catch(() => undefined);
    assert.equal(tf.memory().numTensors, before);
  });

  it('after libhdf5 was stopped in a loop, the next Keras file loads (a fresh HDF5 reader)', { timeout: 30_000 }, async () => {
    await assert.rejects(loadModel(k['h5-heap-loop']));
    const good = path.join(root, 'keras', 'good.h5');
    await writeKerasH5(good, kerasFuzzSpecs.cnn, kerasWeights(kerasFuzzSpecs.cnn, 7));
    const loaded = await loadModel(good);
    try {
      assert.equal(loaded.summary.totalParams, 191);
    } finally {
      disposeModel(loaded);
    }
  });
});

// ---------------------------------------------------------------------------

describe('hostile images', () => {
  let img: Record<HostileImageName, string>;
  before(async () => {
    await setup();
    img = makeHostileImages(path.join(root, 'images'));
  });
  const pixels = (d: { data: Uint8Array }) => Array.from(d.data);

  it('0-byte file', () => refuses(readImageFile(img['empty.png']), 'bad-image', `${img['empty.png']} is empty (0 bytes); the copy or download may have failed.`));
  it('truncated PNG', () =>
    refuses(
      readImageFile(img['truncated.png']),
      'bad-image',
      `${img['truncated.png']} is truncated (it ends inside its IDAT chunk); the copy or download was probably interrupted. Copy the image again or re-export it.`,
    ));
  it('truncated JPEG', () =>
    refuses(
      readImageFile(img['truncated.jpg']),
      'bad-image',
      `${img['truncated.jpg']} is truncated (it has no end-of-image marker after its image data); the copy or download was probably interrupted. Copy the image again or re-export it.`,
    ));
  it('PNG decompression bomb: a few hundred bytes claiming 30000x30000, refused before decoding', async () => {
    const before = memory();
    await refuses(
      readImageFile(img['bomb.png']),
      'bad-image',
      `${img['bomb.png']} claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit; refused before decoding (a decompression bomb, or a scan far larger than a model needs). Resize it first.`,
    );
    assertNoJump(before, 'bomb.png');
  });
  it('JPEG decompression bomb', async () => {
    const before = memory();
    await refuses(
      readImageFile(img['bomb.jpg']),
      'bad-image',
      `${img['bomb.jpg']} claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit; refused before decoding (a decompression bomb, or a scan far larger than a model needs). Resize it first.`,
    );
    assertNoJump(before, 'bomb.jpg');
  });
  it('a 1 KB PNG whose header claims 7000x7000 (under the pixel limit) is refused as damaged, not decoded', () => {
    const png = fs.readFileSync(fixture('images', 'rgb.png'));
    const edited = Buffer.from(png);
    edited.writeUInt32BE(7000, 16);
    edited.writeUInt32BE(7000, 20);
    const crc = crc32(edited.subarray(12, 29));
    edited.writeUInt32BE(crc, 29);
    refusesSync(() => decodeImage(edited, 'claims.png'), 'bad-image', `claims.png is damaged: ${idatBytes(png)} bytes of image data cannot hold the 7000x7000 pixels its header claims. Copy the image again or re-export it.`);
  });
  it('text file named .png', () =>
    refuses(readImageFile(img['text.png']), 'bad-image', `${img['text.png']} is not a PNG or JPEG image (it starts with "hello, I am not"); Layer Lens reads PNG and JPEG files.`));
  it('PNG 0 pixels wide', () => refuses(readImageFile(img['zero-width.png']), 'bad-image', `${img['zero-width.png']} claims a size of 0x5 pixels; the file is corrupt.`));
  it('a folder named x.png (unreadable as a file, even for root)', () =>
    refuses(readImageFile(img['folder.png']), 'bad-image', `${img['folder.png']} is not a file; pick a PNG or JPEG image.`));

  it('16-bit RGB PNG: read, each sample scaled to 8 bits by round(v * 255 / 65535)', async () => {
    const d = await readImageFile(img['rgb16.png']);
    const want = [0, 1].flatMap((y) => [0, 1, 2].flatMap((x) => rgb16Pixel(x, y).map((v) => Math.round((v * 255) / 65535))));
    assert.deepEqual([d.width, d.height], [3, 2]);
    assert.deepEqual(pixels(d), want);
  });
  it('8-bit greyscale PNG: read as equal R, G, B', async () => {
    const d = await readImageFile(img['gray8.png']);
    assert.deepEqual(pixels(d), [0, 1].flatMap((y) => [0, 1, 2].flatMap((x) => [gray8Pixel(x, y), gray8Pixel(x, y), gray8Pixel(x, y)])));
  });
  it('greyscale + alpha PNG: composited over black', async () => {
    const d = await readImageFile(img['gray-alpha.png']);
    const row = [0, 1, 2].flatMap((x) => {
      const [g, a] = grayAlphaPixel(x);
      const v = Math.round((g * a) / 255);
      return [v, v, v];
    });
    assert.deepEqual(pixels(d), [...row, ...row]);
  });
  it('RGBA PNG: transparent is black, half-transparent is half, opaque is the colour', async () => {
    const d = await readImageFile(img['rgba.png']);
    assert.deepEqual(pixels(d), [0, 1, 2].flatMap((x) => rgbaPixel(x).slice(0, 3).map((c) => Math.round((c * rgbaPixel(x)[3]) / 255))));
    assert.deepEqual(pixels(d).slice(0, 3), [0, 0, 0]);
    assert.deepEqual(pixels(d).slice(6), [90, 180, 250]);
  });
});

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function idatBytes(png: Buffer): number {
  let n = 0;
  for (let o = 8; o + 8 <= png.length; o += 12 + png.readUInt32BE(o)) if (png.toString('latin1', o + 4, o + 8) === 'IDAT') n += png.readUInt32BE(o);
  return n;
}

// ---------------------------------------------------------------------------

describe('hostile datasets', () => {
  before(setup);
  const ds = (name: string) => path.join(root, 'datasets', name);

  it('empty class folders are named, with why', async () => {
    const dir = ds('empty-classes');
    for (const c of ['cats', 'dogs', 'birds']) fs.mkdirSync(path.join(dir, c), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cats', 'a.png'), solidPng());
    await refuses(
      scanDataset(dir),
      'bad-dataset',
      `class folders "birds", "dogs" in ${dir} have no usable PNG or JPEG images (birds: it is empty; dogs: it is empty). Add images, or remove the folders.`,
    );
  });

  it('one class', async () => {
    const dir = ds('one-class');
    fs.mkdirSync(path.join(dir, 'cats'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cats', 'a.png'), solidPng());
    await refuses(
      scanDataset(dir),
      'bad-dataset',
      `dataset folder ${dir} needs at least 2 class folders; found 1: cats. Put each class's images in its own sub-folder, e.g. ${dir}/cats and ${dir}/dogs.`,
    );
  });

  it('2000 classes of one image each: scanned and split (every image trains, none validates), without a hang', { timeout: 60_000 }, async () => {
    const dir = manyClassesDataset(ds('many-classes'), 2000);
    const scan = await scanDataset(dir);
    assert.equal(scan.classes.length, 2000);
    assert.ok(scan.counts.every((n) => n === 1));
    assert.deepEqual(scan.skipped, []);
    const split = splitDataset(scan, 0.2, 7);
    assert.deepEqual([split.train.length, split.val.length], [2000, 0]);
  });

  it('non-image files and broken images are left out and listed, with the reason', async () => {
    const dir = ds('mixed');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'good.png'), solidPng());
    }
    fs.writeFileSync(path.join(dir, 'a', 'notes.txt'), 'not an image');
    fs.writeFileSync(path.join(dir, 'a', 'model.json'), '{}');
    fs.writeFileSync(path.join(dir, 'a', 'text.png'), 'hello, I am not an image\n');
    fs.copyFileSync(fixture('images', 'truncated.png'), path.join(dir, 'b', 'cut.png'));
    fs.copyFileSync(fixture('images', 'bomb.png'), path.join(dir, 'b', 'bomb.png'));
    fs.writeFileSync(path.join(dir, 'b', 'empty.jpg'), '');
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [1, 1]);
    assert.deepEqual(scan.skipped, [
      { file: 'a/model.json', reason: 'not-an-image', detail: 'is not a PNG or JPEG image' },
      { file: 'a/notes.txt', reason: 'not-an-image', detail: 'is not a PNG or JPEG image' },
      { file: 'a/text.png', reason: 'corrupt', detail: 'is not a PNG or JPEG image (it starts with "hello, I am not")' },
      { file: 'b/bomb.png', reason: 'corrupt', detail: 'claims 30000x30000 pixels (900 megapixels), over the 50 megapixel limit' },
      { file: 'b/cut.png', reason: 'corrupt', detail: 'is truncated (it ends inside its IDAT chunk)' },
      { file: 'b/empty.jpg', reason: 'corrupt', detail: 'is empty (0 bytes)' },
    ]);
  });

  it('unreadable entries (as root, chmod 000 does not stop a read, so: a dangling link, a link loop, a FIFO; a folder named x.png is walked as a sub-folder)', async () => {
    const dir = ds('unreadable');
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, c), { recursive: true });
      fs.writeFileSync(path.join(dir, c, 'good.png'), solidPng());
    }
    fs.symlinkSync(path.join(dir, 'gone.png'), path.join(dir, 'a', 'dangling.png'));
    fs.symlinkSync('loop2.png', path.join(dir, 'a', 'loop1.png'));
    fs.symlinkSync('loop1.png', path.join(dir, 'a', 'loop2.png'));
    fs.mkdirSync(path.join(dir, 'b', 'x.png'));
    fs.writeFileSync(path.join(dir, 'b', 'x.png', 'inside.png'), solidPng());
    const fifo = path.join(dir, 'b', 'pipe.png');
    const made = spawnSyncOk('mkfifo', [fifo]);
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [1, 2], 'the folder named x.png is a sub-folder, and its image counts');
    assert.deepEqual(
      scan.skipped,
      [
        { file: 'a/dangling.png', reason: 'unreadable', detail: 'is a broken symbolic link' },
        { file: 'a/loop1.png', reason: 'unreadable', detail: 'cannot be read (a symbolic link loop)' },
        { file: 'a/loop2.png', reason: 'unreadable', detail: 'cannot be read (a symbolic link loop)' },
        ...(made ? [{ file: 'b/pipe.png', reason: 'not-an-image', detail: 'is not a regular file' }] : []),
      ],
    );
  });

  it('unicode, spaces and decomposed accents in class and file names', async () => {
    const dir = ds('unicode');
    const names = ['  spaces  around', 'e\u0301te\u0301 (NFD)', '猫', 'עברית \u202e', '🐶 dogs'];
    for (const n of names) {
      fs.mkdirSync(path.join(dir, n), { recursive: true });
      fs.writeFileSync(path.join(dir, n, 'ïmage 1 .png'), solidPng());
    }
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['  spaces  around', 'été (NFD)', 'עברית \u202e', '猫', '🐶 dogs']);
    assert.deepEqual(scan.counts, [1, 1, 1, 1, 1]);
    assert.ok(scan.images.every((im) => fs.existsSync(im.file)));
  });
});

function spawnSyncOk(cmd: string, args: string[]): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('node:child_process').spawnSync(cmd, args).status === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------

describe('hostile recipes and settings', () => {
  let rows: LayerRow[] = [];
  before(async () => {
    await setup();
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    rows = loaded.summary.layers;
    disposeModel(loaded);
  });

  it('bad JSON: one error placed at the fault, and the default recipe', () => {
    const r = parseRecipe('{\n  "freeze": ["conv1",]\n}', { rows, modelName: 'model.json' });
    assert.deepEqual(r.recipe, defaultRecipe());
    assert.deepEqual(
      r.diagnostics.map((d) => [d.severity, d.line, d.column, d.message]),
      [['error', 2, 22, "layerlens.json is not valid JSON: a trailing comma before ']' is not allowed in JSON; remove it. Layer Lens uses the default recipe (nothing frozen) until it is fixed."]],
    );
  });

  it('JSON nested 100 deep: refused by the recipe parser, no stack overflow', () => {
    const r = parseRecipe('['.repeat(100) + ']'.repeat(100));
    assert.deepEqual(
      r.diagnostics.map((d) => d.message),
      ['layerlens.json is not valid JSON: nested deeper than 64 levels. Layer Lens uses the default recipe (nothing frozen) until it is fixed.'],
    );
  });

  it('unknown layer names: warned with a suggestion, ignored', () => {
    const r = parseRecipe('{"freeze": ["conv_1", "nope"]}', { rows, modelName: 'model.json' });
    assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.message]), [
      ['warning', 'freeze lists "conv_1", which is not a layer of model.json; it is ignored. Did you mean "conv1"? Layer paths are as in the Models view, nested ones as "outer/inner/layer".'],
      ['warning', 'freeze lists "nope", which is not a layer of model.json; it is ignored. Layer paths are as in the Models view, nested ones as "outer/inner/layer".'],
    ]);
  });

  it('out-of-range values: each named with what is allowed, and the default used', () => {
    const r = parseRecipe('{"finetune": {"epochs": 0, "batchSize": 1e9, "learningRate": 50, "validationFraction": 2, "optimizer": "adamw"}}');
    assert.deepEqual(r.recipe.finetune, defaultRecipe().finetune);
    assert.deepEqual(r.diagnostics.map((d) => d.message).sort(), [
      'finetune.batchSize must be a whole number from 1 to 4096; found 1000000000. Using the default (32) until it is fixed.',
      'finetune.epochs must be a whole number from 1 to 10000; found 0. Using the default (10) until it is fixed.',
      'finetune.learningRate must be a number greater than 0 and at most 10; found 50. Using the default (0.001) until it is fixed.',
      'finetune.optimizer must be one of "adam", "sgd", "rmsprop"; found "adamw" (did you mean "adam"?). Using the default ("adam") until it is fixed.',
      'finetune.validationFraction must be a number from 0 to 0.9; found 2. Using the default (0.2) until it is fixed.',
    ]);
  });

  it('a 2 MB layerlens.json is not read', async () => {
    const dir = path.join(root, 'recipe-huge');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'layerlens.json'), '{"freeze": [' + '"x",'.repeat(500_000) + '"x"]}');
    const r = await readRecipe(path.join(dir, 'model.json'));
    assert.deepEqual(r.diagnostics.map((d) => d.message), [
      `layerlens.json is ${fs.statSync(path.join(dir, 'layerlens.json')).size} bytes, more than a recipe needs (limit 1048576); Layer Lens uses the default recipe. Is it the right file?`,
    ]);
  });

  it('a layerlens.json linking outside the model folder is not read', async () => {
    const dir = path.join(root, 'recipe-link');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(root, 'secret.json'), '{"freeze": []}');
    fs.symlinkSync(path.join(root, 'secret.json'), path.join(dir, 'layerlens.json'));
    const r = await readRecipe(path.join(dir, 'model.json'));
    assert.deepEqual(r.diagnostics.map((d) => d.message), [
      `layerlens.json is a link to ${fs.realpathSync(path.join(root, 'secret.json'))}, outside the model folder; Layer Lens does not read it. Replace the link with the file itself.`,
    ]);
  });

  it('saving over a layerlens.json the user is editing (bad JSON) is refused, naming the line', async () => {
    const dir = path.join(root, 'recipe-editing');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'layerlens.json'), '{\n  "freeze": [\n');
    await refuses(
      writeRecipe(path.join(dir, 'model.json'), defaultRecipe()),
      'bad-recipe',
      `${path.join(dir, 'layerlens.json')} has a JSON error at line 3, column 1 (unexpected end of the file; expected a value (an object, array, string, number, true, false or null)); fix it, or delete the file, and Layer Lens will save the freeze plan there.`,
    );
  });

  it('fine-tune settings out of range (from a hostile message, not the recipe) are refused before anything loads', async () => {
    await refuses(
      finetune({ modelJsonPath: fixture('tiny-cnn', 'model.json'), datasetDir: root, settings: { epochs: -5, batchSize: 0 }, frozen: [], onProgress: () => undefined }),
      'bad-recipe',
      'the fine-tune settings are not valid (epochs: Too small: expected number to be >=1; batchSize: Too small: expected number to be >=1); fix them in layerlens.json.',
    );
  });
});

// ---------------------------------------------------------------------------

describe('hostile webview messages (checked before use)', () => {
  const cases: [string, unknown, string][] = [
    ['not an object', 42, 'not an object (number)'],
    ['an id that is not a safe integer', { kind: 'request', id: 2 ** 60, method: 'ready', params: {} }, 'no numeric id'],
    ['a method from the prototype', { kind: 'request', id: 1, method: 'constructor', params: {} }, 'unknown request "constructor"'],
    ['params that are not an object', { kind: 'request', id: 1, method: 'inspect', params: null }, 'malformed "inspect" request (params: Invalid input: expected object, received null)'],
    ['an extra key smuggled into params', { kind: 'request', id: 1, method: 'setFrozen', params: JSON.parse('{"paths": ["a"], "frozen": true, "__proto__": {"polluted": 1}}') }, 'malformed "setFrozen" request (params: Unrecognized key: "__proto__")'],
    ['a path list of 100001 entries', { kind: 'request', id: 1, method: 'setFrozen', params: { paths: Array(100001).fill('a'), frozen: true } }, 'malformed "setFrozen" request (paths: Too big: expected array to have <=100000 items)'],
    ['a 5000-character image path', { kind: 'request', id: 1, method: 'inspect', params: { imagePath: 'x'.repeat(5000), normalization: 'raw' } }, 'malformed "inspect" request (imagePath: Too big: expected string to have <=4096 characters)'],
  ];
  for (const [what, m, reason] of cases) {
    it(`drops ${what}`, () => {
      const r = checkWebviewMessage(m);
      assert.equal(r.ok, false);
      assert.equal((r as { reason: string }).reason, reason);
    });
  }
});

// ---------------------------------------------------------------------------

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the bundled CLI, killed after `timeoutMs`. */
function runCli(cli: string, args: string[], timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - start });
    });
  });
}

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
    [['finetune'], 'finetune takes a model.json path and a dataset folder.'],
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
