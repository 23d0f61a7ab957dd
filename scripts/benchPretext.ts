/**
 * Does the rotation pretext task help when labels are few? On generated
 * upright shapes (triangle, house, tee, ell: random size, position, colours
 * and noise), the same small CNN is trained two ways and tested on the same
 * held-out images:
 *
 *   pretext  rotation pretraining on an unlabelled pool (layer-lens pretext),
 *            then Fine-Tune with the backbone frozen and a new head, on FEW labels;
 *   scratch  the same architecture from the same seeded initial weights,
 *            every layer trained on the same FEW labels.
 *
 * Both fine-tunes use the same seed, epochs, batch size and learning rate,
 * through the real pipeline (engine/train/pretext.ts, engine/train/finetune.ts).
 *
 * Usage: npx tsx scripts/benchPretext.ts [--labels 5] [--pool 150] [--test 60]
 *          [--pretext-epochs 8] [--epochs 40] [--seeds 1,2,3]
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/engine/backend';
import { decodeImage, encodePng, toInputTensor } from '../src/engine/image';
import { modelArtifacts, writeArtifacts } from '../src/engine/io/save';
import { loadModel } from '../src/engine/model';
import { Rng } from '../src/engine/random';
import { finetune } from '../src/engine/train/finetune';
import { pretrainRotation } from '../src/engine/train/pretext';

const { values } = parseArgs({
  options: { labels: { type: 'string' }, pool: { type: 'string' }, test: { type: 'string' }, 'pretext-epochs': { type: 'string' }, epochs: { type: 'string' }, seeds: { type: 'string' }, keep: { type: 'boolean' } },
});
const LABELS = Number(values.labels ?? 5);
const POOL = Number(values.pool ?? 150);
const TEST = Number(values.test ?? 60);
const PRETEXT_EPOCHS = Number(values['pretext-epochs'] ?? 8);
const EPOCHS = Number(values.epochs ?? 40);
const SEEDS = (values.seeds ?? '1').split(',').map(Number);
const SIZE = 32;
const CLASSES = ['ell', 'house', 'tee', 'triangle'];

/** One upright shape on a noisy background, as RGB bytes. */
function drawShape(cls: string, rng: Rng): Uint8Array {
  const s = SIZE;
  const fg = [0, 1, 2].map(() => 120 + rng.int(136));
  const bg = [0, 1, 2].map(() => rng.int(90));
  const w = s * rng.uniform(0.45, 0.8);
  const hgt = s * rng.uniform(0.45, 0.8);
  const x0 = rng.uniform(1, s - w - 1);
  const y0 = rng.uniform(1, s - hgt - 1);
  const t = Math.max(2, Math.min(w, hgt) * rng.uniform(0.22, 0.35));
  const inside = (x: number, y: number): boolean => {
    const u = (x - x0) / w;
    const v = (y - y0) / hgt;
    if (u < 0 || u > 1 || v < 0 || v > 1) return false;
    switch (cls) {
      case 'triangle':
        return Math.abs(u - 0.5) <= v / 2;
      case 'house':
        return v < 0.45 ? Math.abs(u - 0.5) <= v / 0.9 : u >= 0.15 && u <= 0.85;
      case 'tee':
        return y - y0 < t || Math.abs(x - (x0 + w / 2)) < t / 2;
      default:
        // ell: a vertical bar on the left and a foot along the bottom.
        return x - x0 < t || y0 + hgt - y < t;
    }
  };
  const rgb = new Uint8Array(s * s * 3);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      const c = inside(x + 0.5, y + 0.5) ? fg : bg;
      for (let k = 0; k < 3; k++) rgb[(y * s + x) * 3 + k] = Math.max(0, Math.min(255, Math.round(c[k] + 14 * rng.normal())));
    }
  }
  return rgb;
}

function writeSet(dir: string, perClass: number, seed: number, byClass: boolean): void {
  const rng = new Rng(seed);
  for (const cls of CLASSES) {
    const target = byClass ? path.join(dir, cls) : dir;
    fs.mkdirSync(target, { recursive: true });
    for (let i = 0; i < perClass; i++) fs.writeFileSync(path.join(target, `${cls}-${String(i).padStart(4, '0')}.png`), encodePng(SIZE, SIZE, drawShape(cls, rng), 3));
  }
}

/** The CNN both runs train, with seeded initial weights (tfjs's initialisers are not seeded). */
async function writeModel(dir: string, seed: number): Promise<string> {
  const m = tf.sequential({ name: 'shapes_cnn' });
  m.add(tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv1' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv2' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool2' }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv3' }));
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dense({ units: CLASSES.length, activation: 'softmax', name: 'head' }));
  const rng = new Rng(seed);
  for (const w of m.weights) {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    // He-uniform kernels (fan in = all but the last axis), zero biases.
    const fanIn = shape.length > 1 ? size / shape[shape.length - 1] : 1;
    const limit = Math.sqrt(6 / fanIn);
    const t = tf.tensor(shape.length > 1 ? Float32Array.from({ length: size }, () => rng.uniform(-limit, limit)) : new Float32Array(size), shape);
    w.write(t);
    t.dispose();
  }
  fs.mkdirSync(dir, { recursive: true });
  await writeArtifacts(dir, await modelArtifacts(m), { extraFiles: { 'metadata.json': JSON.stringify({ labels: CLASSES, normalization: 'zeroOne' }) } });
  m.dispose();
  return path.join(dir, 'model.json');
}

async function accuracy(modelJsonPath: string, testDir: string): Promise<number> {
  const loaded = await loadModel(modelJsonPath);
  const labels = loaded.summary.labels ?? CLASSES;
  let right = 0;
  let total = 0;
  for (const cls of CLASSES) {
    const files = fs.readdirSync(path.join(testDir, cls));
    const xs = tf.tidy(() => tf.stack(files.map((f) => toInputTensor(decodeImage(fs.readFileSync(path.join(testDir, cls, f)), f), SIZE, SIZE, 'zeroOne'))));
    const pred = tf.tidy(() => tf.argMax(loaded.layers!.predict(xs) as tf.Tensor, 1));
    const p = pred.dataSync();
    for (const k of p) if (labels[k] === cls) right++;
    total += p.length;
    tf.dispose([xs, pred]);
  }
  loaded.layers?.dispose();
  return right / total;
}

const out = (s: string) => process.stdout.write(s + '\n');

void (async () => {
  const backend = await initBackend({ prefer: 'auto' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-pretext-bench-'));
  out(`Backend ${backend.name}. ${CLASSES.length} shape classes at ${SIZE}x${SIZE}; ${LABELS} labels per class to fine-tune on, ${POOL * CLASSES.length} unlabelled images for the pretext task, ${TEST} test images per class.`);
  out(`Pretext: ${PRETEXT_EPOCHS} epochs. Fine-tune (both): ${EPOCHS} epochs, batch 8, adam lr 0.01, no augmentation, no validation split.`);
  const results: { seed: number; pretext: number; scratch: number; rotation: number }[] = [];
  try {
    for (const seed of SEEDS) {
      const dir = path.join(tmp, `seed-${seed}`);
      writeSet(path.join(dir, 'unlabelled'), POOL, 1000 + seed, false);
      writeSet(path.join(dir, 'few'), LABELS, 2000 + seed, true);
      writeSet(path.join(dir, 'test'), TEST, 3000 + seed, true);
      const base = await writeModel(path.join(dir, 'models', 'shapes-cnn'), seed);
      const settings = { epochs: EPOCHS, batchSize: 8, learningRate: 0.01, seed, validationFraction: 0, augment: { flip: { enabled: false } } };
      let t0 = performance.now();
      const pre = await pretrainRotation({ modelJsonPath: base, imagesDir: path.join(dir, 'unlabelled'), settings: { epochs: PRETEXT_EPOCHS, seed }, onProgress: () => undefined });
      const preSec = (performance.now() - t0) / 1000;
      t0 = performance.now();
      const a = await finetune({ modelJsonPath: path.join(pre.outputPath, 'model.json'), datasetDir: path.join(dir, 'few'), settings, frozen: ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'gap'], onProgress: () => undefined, outDir: path.join(dir, 'pretext-ft') });
      const b = await finetune({ modelJsonPath: base, datasetDir: path.join(dir, 'few'), settings, frozen: [], onProgress: () => undefined, outDir: path.join(dir, 'scratch-ft') });
      const ftSec = (performance.now() - t0) / 1000;
      const accA = await accuracy(path.join(a.outputPath, 'model.json'), path.join(dir, 'test'));
      const accB = await accuracy(path.join(b.outputPath, 'model.json'), path.join(dir, 'test'));
      results.push({ seed, pretext: accA, scratch: accB, rotation: pre.valAcc ?? pre.acc });
      out(
        `seed ${seed}: rotation task ${((pre.valAcc ?? pre.acc) * 100).toFixed(1)}% (held out) in ${preSec.toFixed(0)} s; test accuracy pretext+frozen ${(accA * 100).toFixed(1)}%  vs  scratch ${(accB * 100).toFixed(1)}%  (chance ${(100 / CLASSES.length).toFixed(0)}%; fine-tunes ${ftSec.toFixed(0)} s)`,
      );
    }
    const mean = (f: (r: (typeof results)[number]) => number) => results.reduce((s, r) => s + f(r), 0) / results.length;
    out(`mean over ${results.length} seed(s): pretext+frozen ${(mean((r) => r.pretext) * 100).toFixed(1)}%, scratch ${(mean((r) => r.scratch) * 100).toFixed(1)}%`);
  } finally {
    if (!values.keep) fs.rmSync(tmp, { recursive: true, force: true });
    else out(`kept ${tmp}`);
  }
})();
