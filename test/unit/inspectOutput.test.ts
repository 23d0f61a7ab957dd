/** What the inspector's numbers become: fast layer statistics, colormaps and channel grids, and the inspect CLI's files. */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeImage } from '../../src/engine/image';
import { channelGrid, colormapLut, gridShape } from '../../src/protocol/colormap';
import { statsPath, sumAndZeros, tensorStats } from '../../src/engine/inspect/fastStats';
import { modelArtifacts, writeArtifacts } from '../../src/engine/io/save';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';
import { img } from './inspectHelpers';

describe('fast layer statistics', () => {
  before(setup);

  it('uses the SIMD kernel on wasm and agrees with a float64 reference, odd lengths and -0 included', () => {
    assert.equal(statsPath(), 'wasm-simd', 'the in-place SIMD kernel should load on wasm (else the JS loop runs, correct but slower)');
    for (const n of [1, 2, 3, 4, 5, 7, 64, 1001, 65537]) {
      const v = Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : i % 7 === 0 ? -0 : Math.sin(i * 1.7) * 10 ** (i % 5)));
      let sum = 0;
      let zeros = 0;
      for (const x of v) {
        sum += x;
        if (x === 0) zeros++;
      }
      const t = tf.tensor(v);
      const got = tensorStats(t);
      assert.equal(got.zeros, zeros, `n=${n} zeros`);
      assert.ok(Math.abs(got.sum - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), `n=${n} sum ${got.sum} vs ${sum}`);
      assert.deepEqual(sumAndZeros(v).zeros, zeros);
      assert.ok(Math.abs(tf.sum(t).dataSync()[0] - sum) <= 1e-3 * Math.max(1, Math.abs(sum)), 'and with tf.sum');
      t.dispose();
    }
  });

  it('reads tensors made by ops, in place, after the heap has grown', () => {
    const big = tf.relu(tf.randomNormal([1, 64, 64, 32], 0, 1, 'float32', 4));
    const more = tf.ones([4 * 1024 * 1024]); // grows the wasm heap
    const v = big.dataSync();
    let sum = 0;
    let zeros = 0;
    for (const x of v) {
      sum += x;
      if (x === 0) zeros++;
    }
    const got = tensorStats(big);
    assert.equal(got.zeros, zeros);
    assert.ok(Math.abs(got.sum - sum) < 1e-6 * sum);
    assert.equal(tensorStats(more).sum, 4 * 1024 * 1024);
    tf.dispose([big, more]);
  });
});

describe('colormaps and channel grids', () => {
  it('viridis, magma and gray hit matplotlib colours at the ends and the middle', () => {
    const at = (name: 'viridis' | 'magma' | 'gray', i: number) => Array.from(colormapLut(name).subarray(i * 3, i * 3 + 3));
    assert.deepEqual(at('viridis', 0), [68, 1, 84]);
    assert.deepEqual(at('viridis', 255), [253, 231, 37]);
    assert.deepEqual(at('magma', 0), [0, 0, 4]);
    assert.deepEqual(at('magma', 255), [252, 253, 191]);
    assert.deepEqual(at('gray', 77), [77, 77, 77]);
    // matplotlib viridis(0.5) = #21918c, magma(0.5) = #b73779: within 3 steps.
    at('viridis', 128).forEach((v, c) => assert.ok(Math.abs(v - [0x21, 0x91, 0x8c][c]) <= 3, `viridis mid ${c}: ${v}`));
    at('magma', 128).forEach((v, c) => assert.ok(Math.abs(v - [0xb7, 0x37, 0x79][c]) <= 3, `magma mid ${c}: ${v}`));
    const lum = (name: 'viridis' | 'magma') => Array.from({ length: 256 }, (_, i) => at(name, i)).map(([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b);
    for (const name of ['viridis', 'magma'] as const) lum(name).forEach((l, i, a) => assert.ok(i === 0 || l >= a[i - 1] - 0.5, `${name} gets lighter: ${i}`));
  });

  it('tiles channels near-square with 1 px transparent gaps, each channel coloured from its own bytes', () => {
    const maps = { channels: 5, height: 2, width: 3, data: Uint8Array.from({ length: 5 * 6 }, (_, i) => i * 8) };
    const g = channelGrid(maps, 'gray');
    assert.deepEqual([g.cols, g.rows, g.width, g.height], [3, 2, 3 * 3 + 2, 2 * 2 + 1]);
    const px = (x: number, y: number) => Array.from(g.rgba.subarray((y * g.width + x) * 4, (y * g.width + x) * 4 + 4));
    assert.deepEqual(px(0, 0), [0, 0, 0, 255], 'channel 0, first byte');
    assert.deepEqual(px(3, 0), [0, 0, 0, 0], 'gap column');
    assert.deepEqual(px(0, 2), [0, 0, 0, 0], 'gap row');
    const c4 = 4 * 6; // channel 4 sits at column 1, row 1
    assert.deepEqual(px(4 + 2, 3 + 1), [(c4 + 5) * 8, (c4 + 5) * 8, (c4 + 5) * 8, 255]);
    assert.deepEqual(px(8, 3), [0, 0, 0, 0], 'the empty sixth cell is transparent');
    const sorted = channelGrid(maps, 'gray', [4, 0]);
    assert.deepEqual([sorted.cols, sorted.rows], [2, 1]);
    assert.equal(sorted.rgba[0], c4 * 8, 'order puts channel 4 first');
    assert.deepEqual(gridShape(1), { cols: 1, rows: 1 });
    assert.deepEqual(gridShape(960), { cols: 31, rows: 31 });
  });

  it('colormap.ts imports neither tfjs nor Node, so the webview can use it', () => {
    const src = fs.readFileSync(path.resolve(__dirname, '../../src/protocol/colormap.ts'), 'utf8');
    const imports = [...src.matchAll(/^import\s.*?from\s+'([^']+)'/gm)].map((m) => m[1]);
    assert.deepEqual(imports, ['./inspect']);
    assert.match(src, /^import type /m);
  });
});

describe('layer-lens inspect (CLI)', () => {
  before(setup);
  const root = path.resolve(__dirname, '../..');
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-inspect-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes summary.json and one PNG grid per feature-map layer, and prints the table and predictions', () => {
    const out = path.join(tmp, 'a', 'result');
    const r = cli('inspect', fixture('nested', 'model.json'), '--image', img('photo.jpg'), '--out', out, '--colormap', 'magma', '--top-k', '1');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /normalization minusOneOne \(its Teachable Machine metadata\.json\)/);
    assert.match(r.stdout, /^ {4}dw1\s+DepthwiseConv2D\s+\[8, 8, 4\]\s+\S+\s+\d+%\s+maps\/005-features_backbone_dw1\.png$/m);
    assert.match(r.stdout, /Top 1 predictions:\n {2}1\. (yes|no) +\d+\.\d%/);
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      predictions: { label: string }[];
      layers: { path: string; kind: string; grid?: string; mean: number; channels?: { min: number; max: number }[] }[];
      normalization: string;
      colormap: string;
    };
    assert.equal(s.predictions.length, 1);
    assert.equal(s.colormap, 'magma');
    assert.equal(s.layers.length, 11);
    const grids = s.layers.filter((l) => l.grid);
    assert.deepEqual(grids.map((l) => l.path), ['features/backbone/input_1', 'features/backbone/Conv1', 'features/backbone/bn_Conv1', 'features/backbone/Conv1_relu', 'features/backbone/dw1']);
    const dw = s.layers.find((l) => l.path === 'features/backbone/dw1')!;
    assert.equal(dw.channels?.length, 4);
    const png = decodeImage(fs.readFileSync(path.join(out, dw.grid!)), dw.grid!);
    assert.deepEqual([png.width, png.height], [2 * 8 + 1, 2 * 8 + 1], '4 channels of 8x8 in a 2x2 grid with 1 px gaps');
    assert.deepEqual(fs.readdirSync(path.join(out, 'maps')).length, 5);
    assert.deepEqual(fs.readdirSync(path.dirname(out)), ['result'], 'no temporary folder left behind');
    // Again into the same (now existing) folder: an earlier run's files are not replaced without --force (issue 15).
    const before = fs.readFileSync(path.join(out, 'summary.json'), 'utf8');
    const refused = cli('inspect', fixture('nested', 'model.json'), '--image', img('rgb.png'), '--out', out, '--normalization', 'zeroOne');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /already holds summary\.json, maps\/ .*Pass --force to replace them/);
    assert.equal(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'), before);
    const again = cli('inspect', fixture('nested', 'model.json'), '--image', img('rgb.png'), '--out', out, '--normalization', 'zeroOne', '--force');
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as { normalization: string }).normalization, 'zeroOne');
  });

  it('labels from metadata.json; says when a model has no feature maps', async () => {
    const r = cli('inspect', fixture('tiny-cnn', 'model.json'), '--image', img('rgb.png'), '--out', path.join(tmp, 'tiny'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Wrote .*summary\.json and 4 feature-map grids/);
    assert.match(r.stdout, /1\. (circle|square|triangle)/);
    const mlp = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [4, 4, 3], name: 'flat' }), tf.layers.dense({ units: 2, activation: 'softmax', name: 'out' })] });
    const dir = path.join(tmp, 'mlp');
    fs.mkdirSync(dir);
    await writeArtifacts(dir, await modelArtifacts(mlp));
    mlp.dispose();
    const n = cli('inspect', path.join(dir, 'model.json'), '--image', img('rgb.png'), '--out', path.join(tmp, 'mlp-out'));
    assert.equal(n.code, 0, n.stderr);
    assert.match(n.stdout, /Note: No layer of mlp outputs a feature map \[h, w, c\], so there are no channel grids to show/);
    assert.match(n.stdout, /normalization zeroOne \(default; pass --normalization if the model expects another\)/);
    assert.match(n.stdout, /Wrote .*summary\.json\.$/m);
  });

  it('exits 1 with one line for an unreadable image or an --out that is a file', () => {
    const r = cli('inspect', fixture('tiny-cnn', 'model.json'), '--image', img('text.png'), '--out', path.join(tmp, 'x'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^layer-lens: .*text\.png is not a PNG or JPEG image \(it starts with "hello, I am not"\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(!fs.existsSync(path.join(tmp, 'x')), 'nothing written');
    const file = path.join(tmp, 'file.txt');
    fs.writeFileSync(file, 'x');
    const f = cli('inspect', fixture('tiny-cnn', 'model.json'), '--image', img('rgb.png'), '--out', file);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /--out .*file\.txt exists and is not a folder/);
  });

  const m = () => fixture('tiny-cnn', 'model.json');
  for (const args of [
    ['inspect'],
    ['inspect', 'model.json', '--out', 'o'],
    ['inspect', 'model.json', '--image', 'i.png'],
    ['inspect', 'a.json', 'b.json', '--image', 'i.png', '--out', 'o'],
    ['inspect', 'MODEL', '--image', 'i.png', '--out', 'o', '--colormap', 'jet'],
    ['inspect', 'MODEL', '--image', 'i.png', '--out', 'o', '--normalization', 'unit'],
    ['inspect', 'MODEL', '--image', 'i.png', '--out', 'o', '--top-k', '0'],
    ['inspect', 'MODEL', '--image', 'i.png', '--out', 'o', '--bogus'],
  ]) {
    it(`gives usage and exit 2 for: ${args.join(' ')}`, () => {
      const r = cli(...args.map((a) => (a === 'MODEL' ? m() : a)));
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /Usage: layer-lens <command>/);
      assert.match(r.stderr, /inspect <model> --image <file> --out <dir>/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
  }
});
