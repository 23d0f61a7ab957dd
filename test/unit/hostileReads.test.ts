/**
 * Issue 15, second half: no hang, no wrong number, no "unexpected error" for
 * a known cause. Each case of the adversarial round by name, and cases of the
 * same classes it did not try. The mechanisms under test: io/safeRead.ts
 * (nothing read before it is known to be an ordinary file on a disk; exactly
 * its size; a time limit), io/walk.ts (each folder and file once by device
 * and inode; what is left out is named), cli/interrupt.ts (the second Ctrl-C
 * always ends the CLI), and the load-time checks of io/geometry.ts and
 * io/modelFiles.ts.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { pca } from '../../src/engine/embed/pca';
import { decodeImage, readImageFile } from '../../src/engine/image';
import { readLimits, readRegularFile, readSmallFileSync, stuckReads, UnreadableFile } from '../../src/engine/io/safeRead';
import { writeRecipe } from '../../src/engine/recipe';
import { metadataDataset } from '../../src/cli/compare';
import { defaultRecipe } from '../../src/protocol/recipe';
import { disposeModel, loadModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { scanDataset, splitDataset } from '../../src/engine/train/dataset';
import { currentBundles } from '../fixtures/bundles';
import { repoRoot, solidPng } from '../fixtures/hostile';
import { bitDepth3Png, deepDataset, geometryModels, loopDataset, quantizedWithScale, twoClassDataset, unusedWeightModel, writeInvalidUtf8Name } from '../fixtures/hostileFaults';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';
import { refuses, root, runCli, hangLimit } from './hostileHelpers';

const at = (...p: string[]) => path.join(root, 'reads', ...p);
const kmsg = fs.existsSync('/proc/kmsg') ? false : 'no /proc/kmsg here';
const mkfifo = (p: string) => spawnSync('mkfifo', [p]).status === 0;
let cli = '';

before(async () => {
  await setup();
  fs.mkdirSync(at(), { recursive: true });
  cli = path.join(await currentBundles(), 'cli.js');
});

describe('no hang (issue 15)', () => {
  it('a dataset image that is a link to /proc/kmsg: left out as a kernel file, never read; the scan ends', { skip: kmsg, timeout: hangLimit }, async () => {
    const dir = twoClassDataset(at('kmsg-dataset'));
    fs.symlinkSync('/proc/kmsg', path.join(dir, 'a', 'kmsg.png'));
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [3, 3]);
    assert.deepEqual(scan.skipped, [{ file: 'a/kmsg.png', reason: 'unreadable', detail: 'is a file of the kernel (/proc/kmsg), not an image on a disk' }]);
  });

  it('a class folder that links into /proc, and /proc itself as the dataset: never walked', { skip: kmsg, timeout: hangLimit }, async () => {
    const dir = twoClassDataset(at('proc-class'));
    fs.symlinkSync('/proc/self', path.join(dir, 'c'));
    fs.symlinkSync('/proc/self', path.join(dir, 'a', 'inner'));
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['a', 'b']);
    assert.deepEqual(scan.skipped, [{ file: 'a/inner', reason: 'unreadable', detail: `is a file of the kernel (${fs.realpathSync('/proc/self')}), not an image on a disk` }]);
    await refuses(scanDataset('/proc'), 'bad-dataset', 'dataset folder /proc is a folder of the kernel (/proc), not a folder of images.');
  });

  it('--image a link to /proc/kmsg, or a FIFO: refused before opening (the CLI ends at once)', { skip: kmsg, timeout: hangLimit }, async () => {
    const link = at('kmsg.png');
    fs.symlinkSync('/proc/kmsg', link);
    await refuses(readImageFile(link), 'bad-image', `${link} is a file of the kernel (/proc/kmsg), not a file on a disk; pick a PNG or JPEG image.`);
    const fifo = at('pipe.png');
    if (mkfifo(fifo)) await refuses(readImageFile(fifo), 'bad-image', `${fifo} is not a regular file (a FIFO); pick a PNG or JPEG image.`);
    const r = await runCli(cli, ['inspect', fixture('tiny-cnn', 'model.json'), '--image', link, '--out', at('kmsg-out')]);
    assert.equal(r.signal, null, 'it ended by itself');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `layer-lens: ${link} is a file of the kernel (/proc/kmsg), not a file on a disk; pick a PNG or JPEG image.\n`);
  });

  it('a dataset FIFO and a weight shard that is a FIFO or a folder: "not a regular file", never opened', async () => {
    const dir = twoClassDataset(at('fifo-dataset'));
    if (!mkfifo(path.join(dir, 'b', 'pipe.png'))) return;
    assert.deepEqual((await scanDataset(dir)).skipped, [{ file: 'b/pipe.png', reason: 'not-an-image', detail: 'is not a regular file (a FIFO)' }]);
    for (const kind of ['FIFO', 'folder'] as const) {
      const m = at(`shard-${kind}`);
      fs.cpSync(fixture('tiny-cnn'), m, { recursive: true });
      fs.rmSync(path.join(m, 'weights.bin'));
      if (kind === 'FIFO') mkfifo(path.join(m, 'weights.bin'));
      else fs.mkdirSync(path.join(m, 'weights.bin'));
      await refuses(loadModel(path.join(m, 'model.json')), 'missing-shard', `weights shard weights.bin is not a regular file (a ${kind}) (next to ${path.join(m, 'model.json')}); restore the shard or re-export the model.`);
    }
  });

  it('a metadata.json, labels.txt or layerlens.json that is a FIFO or a link to /proc/kmsg: never read (in the editor it would stop the extension host)', { timeout: hangLimit }, async () => {
    const dir = at('fifo-sidecars');
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    fs.rmSync(path.join(dir, 'metadata.json'));
    if (!mkfifo(path.join(dir, 'metadata.json')) || !mkfifo(path.join(dir, 'layerlens.json'))) return;
    if (!kmsg) fs.symlinkSync('/proc/kmsg', path.join(dir, 'labels.txt'));
    assert.equal(readSmallFileSync(path.join(dir, 'metadata.json'), 1 << 20), undefined);
    assert.equal(metadataDataset(path.join(dir, 'model.json')), undefined);
    const loaded = await loadModel(path.join(dir, 'model.json'));
    assert.equal(loaded.summary.labels, undefined);
    disposeModel(loaded);
    await refuses(
      writeRecipe(path.join(dir, 'model.json'), defaultRecipe()),
      'bad-recipe',
      `${path.join(dir, 'layerlens.json')} cannot be read before saving (is not a regular file (a FIFO)); check it, or remove it and Layer Lens will save the freeze plan there.`,
    );
  });

  it('the second Ctrl-C ends the CLI even while a read is blocked in the kernel (process.exit would wait for it)', { timeout: hangLimit }, async () => {
    const fifo = at('blocked.fifo');
    if (!mkfifo(fifo)) return;
    // A raw read of a FIFO nobody writes to blocks one of libuv's threads for good: the state a hung network drive leaves.
    const script = `require(${JSON.stringify(path.join(repoRoot, 'node_modules/tsx/dist/cjs/index.cjs'))});
const { interruptible } = require(${JSON.stringify(path.join(repoRoot, 'src/cli/interrupt.ts'))});
interruptible('stopping');
require('node:fs').promises.readFile(${JSON.stringify(fifo)});
process.stdout.write('blocked\\n');`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const ended = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGINT');
    const safety = setTimeout(() => child.kill('SIGKILL'), hangLimit);
    const signal = await ended;
    clearTimeout(safety);
    assert.equal(signal, 'SIGINT', `it ended by the second Ctrl-C, not by the safety net: ${stderr}`);
    assert.match(stderr, /stopping \(Ctrl-C again to quit at once\)…\n.*layer-lens: interrupted\.\n/s);
  });

  it('a read that does not answer within the time limit is given up, named, and counted', async () => {
    const file = at('slow.bin');
    fs.writeFileSync(file, 'x'.repeat(100));
    const p = fs.promises as unknown as { open: (...a: unknown[]) => Promise<fs.promises.FileHandle> };
    const open = p.open;
    const saved = readLimits.chunkTimeoutMs;
    p.open = async (...a: unknown[]) => {
      const h = await open.apply(fs.promises, a);
      return Object.assign(Object.create(h), { stat: () => h.stat(), read: () => new Promise(() => undefined), close: () => h.close() });
    };
    readLimits.chunkTimeoutMs = 50;
    const stuck = stuckReads();
    try {
      await assert.rejects(readRegularFile(file, { shown: 'slow.bin', maxBytes: 1000 }), (e: unknown) => e instanceof UnreadableFile && e.kind === 'timeout' && e.message === 'slow.bin did not answer within 0 s (a hung network drive, or a device that is no file); it was left unread.');
    } finally {
      p.open = open;
      readLimits.chunkTimeoutMs = saved;
    }
    assert.equal(stuckReads(), stuck + 1);
  });

  for (const links of [1, 3, 6]) {
    it(`a dataset with ${links} link${links > 1 ? 's' : ''} to "." in a class folder: each image once, the links named, none in both train and validation`, { timeout: hangLimit }, async () => {
      const dir = loopDataset(at(`loops-${links}`), links);
      const scan = await scanDataset(dir);
      assert.deepEqual(scan.counts, [3, 3]);
      assert.deepEqual(
        scan.skipped,
        Array.from({ length: links }, (_, k) => ({ file: `a/l${k + 1}/`, reason: 'duplicate', detail: 'links back to a/ (a symbolic link loop); not followed' })),
      );
      const split = splitDataset(scan, 0.34, 7);
      const reals = (xs: { file: string }[]) => new Set(xs.map((x) => fs.realpathSync(x.file)));
      const train = reals(split.train);
      assert.deepEqual([...reals(split.val)].filter((f) => train.has(f)), []);
    });
  }

  it('a link to the dataset folder itself, and one file linked into both classes: read once, and said so', async () => {
    const dir = twoClassDataset(at('cross-links'));
    fs.symlinkSync('..', path.join(dir, 'b', 'up'));
    fs.symlinkSync(path.join(dir, 'a', '0.png'), path.join(dir, 'b', 'z-copy.png'));
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [3, 3]);
    assert.deepEqual(scan.skipped, [
      { file: 'b/up/', reason: 'duplicate', detail: 'links back to the folder itself (a symbolic link loop); not followed' },
      { file: 'b/z-copy.png', reason: 'duplicate', detail: 'is the same file as a/0.png (a link); used once' },
    ]);
  });

  it('folders nested past 8 levels: named, not dropped without a word', async () => {
    const dir = deepDataset(at('deep'), 10);
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [3, 3]);
    assert.deepEqual(scan.skipped, [{ file: 'a/d1/d2/d3/d4/d5/d6/d7/d8/', reason: 'too-deep', detail: 'is more than 8 folder levels below deep; its contents were not read' }]);
  });
});

describe('wrong numbers (issue 15)', () => {
  it('quantized weights whose scale is 1e400 (Infinity once parsed): load, with the NaN/Inf warning float weights get', async () => {
    const loaded = await loadModel(quantizedWithScale(at('q-huge'), '1e400'));
    try {
      assert.deepEqual(loaded.summary.warnings, ['weight "conv1/kernel" holds 1 NaN and 107 infinite values of 108']);
    } finally {
      disposeModel(loaded);
    }
  });

  it('quantized weights whose scale is not a number: refused, naming it', async () => {
    const file = quantizedWithScale(at('q-text'), '"abc"');
    await refuses(loadModel(file), 'bad-weights', `${file}: weight "conv1/kernel" is uint8-quantized, but its scale is "abc", not a number; the manifest is damaged. Re-export the model.`);
  });

  it('PCA of 8-dimensional embeddings of rank 2: each fraction in [0, 1], together at most 1, as the exact eigen-decomposition gives', () => {
    const rng = new Rng(3);
    const n = 20;
    const d = 8;
    const data = new Float32Array(n * d);
    for (let i = 0; i < n; i++) for (let j = 0; j < 2; j++) data[i * d + j] = rng.normal() * (j + 1);
    const r = pca(data, n, d, 2, { seed: 7 });
    // Exact: the covariance of two columns, by hand.
    const col = (j: number) => Array.from({ length: n }, (_, i) => data[i * d + j]);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const [x, y] = [col(0), col(1)].map((v) => v.map((t) => t - mean(v)));
    const cxx = x.reduce((a, t) => a + t * t, 0);
    const cyy = y.reduce((a, t) => a + t * t, 0);
    const cxy = x.reduce((a, t, i) => a + t * y[i], 0);
    const l1 = (cxx + cyy) / 2 + Math.sqrt(((cxx - cyy) / 2) ** 2 + cxy * cxy);
    assert.ok(Math.abs(r.explained[0] - l1 / (cxx + cyy)) < 1e-4, `${r.explained[0]} vs ${l1 / (cxx + cyy)}`);
    assert.ok(r.explained.every((f) => f >= 0 && f <= 1) && r.explained[0] + r.explained[1] <= 1 + 1e-5, r.explained.join(', '));
  });

  for (const [name, message] of [
    ['kernel-0', (f: string) => `${path.basename(f)}: layer "conv1" (Conv2D) has kernel size [0,0]; each must be a whole number from 1 to 4096. No image can run through it: its config is damaged. Re-export the model.`],
    ['strides-0', (f: string) => `${path.basename(f)}: layer "conv2" (Conv2D) has stride [0,0]; each must be a whole number from 1 to 4096. No image can run through it: its config is damaged. Re-export the model.`],
    [
      'kernel-over-input',
      (f: string) =>
        `${path.basename(f)}: layer "conv1" (Conv2D) would turn its input [null, 2, 2, 3] into [null, 0, 0, 4] (window 3x3, strides 1x1, valid padding): its window is larger than its input, or a size is zero. No image can run through the model: its config is damaged. Re-export the model.`,
    ],
    [
      'pool-over-input',
      (f: string) =>
        `${path.basename(f)}: layer "pool1" (MaxPooling2D) would turn its input [null, 1, 1, 4] into [null, 0, 0, 4] (window 2x2, strides 2x2, valid padding): its window is larger than its input, or a size is zero. No image can run through the model: its config is damaged. Re-export the model.`,
    ],
  ] as const) {
    it(`a convolution that no image can run through (${name}): refused at load, naming the layer`, async () => {
      const file = geometryModels(at(`geometry-${name}`))[name];
      await refuses(loadModel(file), 'not-a-model', message(file));
    });
  }

  it('an unused 2 GB weight in a sparse shard: refused from the manifest; the shard is never opened', async () => {
    const { model, shard } = unusedWeightModel(at('unused'));
    const p = fs.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
    const opened: string[] = [];
    const saved = p['open'];
    p['open'] = (...a: unknown[]) => (opened.push(String(a[0])), saved.apply(fs.promises, a));
    try {
      await refuses(
        loadModel(model),
        'bad-weights',
        `${model}: the weights manifest lists weight "leftover/kernel" (2.0 GB) that no layer of the model has; the manifest does not match the topology. Refused before reading the shards; re-export the model.`,
      );
    } finally {
      p['open'] = saved;
    }
    assert.ok(!opened.includes(shard), opened.join('\n'));
  });
});

describe('messages that name the cause (issue 15)', () => {
  it('a PNG of bit depth 3: "unsupported bit depth", not "fails its checksum"', () => {
    assert.throws(() => decodeImage(bitDepth3Png(), 'd3.png'), { message: 'd3.png is a RGB PNG with an unsupported bit depth of 3 (the standard allows 8, 16); the file is damaged or was written by a faulty encoder.' });
  });

  it('an image whose name is not valid UTF-8: named, not "disappeared during the scan"', async () => {
    const dir = twoClassDataset(at('utf8'));
    if (!writeInvalidUtf8Name(path.join(dir, 'a'), solidPng())) return;
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [3, 3]);
    assert.deepEqual(scan.skipped, [{ file: 'a/x\uFFFD\uFFFD.png', reason: 'unreadable', detail: 'has a name that is not valid UTF-8 (shown with �), which Layer Lens cannot open; rename it' }]);
  });

  it('a dataset "image" linked to a secret outside the dataset: its bytes are quoted nowhere; a file inside still is', async () => {
    const secret = at('shadow');
    fs.writeFileSync(secret, 'root:$6$s3cr3t-hash:19000:0:99999:7:::\n');
    const dir = twoClassDataset(at('secret'));
    fs.symlinkSync(secret, path.join(dir, 'a', 'cat.png'));
    fs.writeFileSync(path.join(dir, 'b', 'note.png'), 'plain text here\n');
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.skipped, [
      { file: 'a/cat.png', reason: 'corrupt', detail: 'is not a PNG or JPEG image' },
      { file: 'b/note.png', reason: 'corrupt', detail: 'is not a PNG or JPEG image (it starts with "plain text here")' },
    ]);
    const link = at('workspace-link.png');
    fs.symlinkSync(secret, link);
    await refuses(readImageFile(link), 'bad-image', `${link} is not a PNG or JPEG image; Layer Lens reads PNG and JPEG files.`);
  });

  it('EIO while reading an image: the cause in words', async () => {
    const file = at('eio.png');
    fs.writeFileSync(file, solidPng());
    const p = fs.promises as unknown as { open: (...a: unknown[]) => Promise<fs.promises.FileHandle> };
    const open = p.open;
    p.open = async (...a: unknown[]) => {
      const h = await open.apply(fs.promises, a);
      return Object.assign(Object.create(h), { stat: () => h.stat(), read: () => Promise.reject(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })), close: () => h.close() });
    };
    try {
      await refuses(readImageFile(file), 'bad-image', `${file} cannot be read (the disk reported an input/output error (a failing disk, or a network or USB drive that went away)); pick a PNG or JPEG image.`);
    } finally {
      p.open = open;
    }
  });

  it('a Keras file over 2 GiB (sparse): refused by its size, not "File size … is greater than 2 GiB"', async () => {
    const f = at('huge.h5');
    fs.writeFileSync(f, '');
    fs.truncateSync(f, 3 * 2 ** 30);
    await refuses(loadModel(f), 'too-large', `${f} is 3.0 GB; Layer Lens reads Keras files of up to 2 GB into memory. Convert it with "tensorflowjs_converter --input_format keras huge.h5 out/" and open out/model.json.`);
  });
});

describe('the command line (issue 15)', () => {
  const m = () => fixture('tiny-cnn', 'model.json');
  const usage: [string, string[], string][] = [
    ['--seed -1', ['finetune', 'm.json', 'data', '--seed', '-1'], '--seed -1: must be at least 0.'],
    ['--top-k -1', ['inspect', 'm.json', '--image', 'x.png', '--out', 'o', '--top-k', '-1'], '--top-k -1: must be at least 1.'],
    ['--patience 1e9', ['finetune', 'm.json', 'data', '--patience', '1e9'], '--patience 1e9: must be at most 1000.'],
    ['--epochs 0x2', ['finetune', 'm.json', 'data', '--epochs', '0x2'], '--epochs 0x2: not a number (write it in decimal).'],
    ['--lr Infinity', ['finetune', 'm.json', 'data', '--lr', 'Infinity'], '--lr Infinity: not a number.'],
    ['--max-images 1e400', ['compare', 'a.json', 'b.json', '--image', 'x.png', '--out', 'o', '--max-images', '1e400'], '--max-images 1e400: not a number.'],
  ];
  for (const [what, args, message] of usage) {
    it(`${what}: the reason in words, the usage, exit 2`, async () => {
      const r = await runCli(cli, args);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.split('\n')[0], `layer-lens: ${message}`);
    });
  }

  it('a recipe error says one thing: what is wrong and that the run stopped, not "Using the default … until it is fixed"', async () => {
    const dir = at('recipe-error');
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'layerlens.json'), '{"finetune": {"epochs": "abc"}}');
    const r = await runCli(cli, ['finetune', path.join(dir, 'model.json'), twoClassDataset(at('recipe-data'))]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `layer-lens: ${path.join(dir, 'layerlens.json')}:1:25: error: finetune.epochs must be a whole number from 1 to 10000; found "abc". Fix the file, or move it away to use the defaults.\n`);
  });

  it('--backend tensorflow without tfjs-node: says so, and which backend it uses instead', async (t) => {
    let present = true;
    try {
      require.resolve('@tensorflow/tfjs-node');
    } catch {
      present = false;
    }
    if (present) return t.skip('tfjs-node is installed here');
    const r = await runCli(cli, ['summary', m(), '--backend', 'tensorflow']);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /^layer-lens: warning: --backend tensorflow is not available \(tfjs-node is not available .*\); using wasm instead\.\n$/);
  });
});
