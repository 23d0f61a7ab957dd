/**
 * Makes the demo workspace (demo/, git-ignored): everything a newcomer needs
 * to see transfer learning happen in a few minutes, made in code and seeded,
 * never downloaded.
 *
 *   demo/
 *     datasets/shapes/<class>/*.png   pretext task: 8 shapes (circle, cross, diamond,
 *                                     ellipse, semicircle, square, star, triangle) in
 *                                     random colours, sizes, places and angles on
 *                                     noisy textured backgrounds, 200 per class
 *     datasets/glyphs/<class>/*.png   downstream task: 5 OTHER shapes (arrow, crescent,
 *                                     heart, hexagon, ring), 20 per class
 *     models/untrained-cnn/           the CNN with seeded random weights; its
 *                                     layerlens.json freezes nothing (the baseline)
 *     models/shapes-cnn/              the same CNN pretrained on datasets/shapes, with
 *                                     metadata.json (labels) and layerlens.json (the
 *                                     backbone frozen, the downstream fine-tune settings)
 *     images/                         sample images (in no dataset)
 *     README.md                       what is here and what to try
 *
 * The CNN (32x32 RGB in): conv1-pool1, conv2-pool2, conv3-pool3 (3x3 convs,
 * ReLU, 16/32/64 filters), global average pooling (gap), Dense softmax
 * (head). It is pretrained with the engine's own fine-tune job
 * (src/engine/train/finetune.ts) on the wasm backend, nothing frozen, from
 * models/untrained-cnn, and saved by it (src/engine/io/save.ts).
 *
 * Pretraining takes a minute or two on 2 cores, so the demo is cached: a run
 * that finds demo/.complete with the same generator version and scale does
 * nothing (--force regenerates). scripts/demo.ts calls makeDemo().
 *
 *   npx tsx scripts/makeDemo.ts [--out demo] [--small] [--force]
 *     --small   a tiny version (16x16, 4 images per class, 1 epoch) for tests
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/engine/backend';
import { encodePng } from '../src/engine/image';
import { modelArtifacts, writeArtifacts } from '../src/engine/io/save';
import { disposeModel, loadModel } from '../src/engine/model';
import { writeRecipe } from '../src/engine/recipe';
import { Rng } from '../src/engine/random';
import { finetune } from '../src/engine/train/finetune';
import { freezeUpTo } from '../src/protocol/freezePlan';
import { recipeSchema, type FinetuneSettings } from '../src/protocol/recipe';

/** Bump when the output changes: a cached demo/ of another version is regenerated. */
export const GENERATOR_VERSION = 1;

export const pretextClasses = ['circle', 'cross', 'diamond', 'ellipse', 'semicircle', 'square', 'star', 'triangle'] as const;
export const downstreamClasses = ['arrow', 'crescent', 'heart', 'hexagon', 'ring'] as const;
type ShapeName = (typeof pretextClasses)[number] | (typeof downstreamClasses)[number];

export interface DemoScale {
  /** Image side in pixels (the model's input). */
  size: number;
  /** Images per class of the pretext dataset. */
  pretextPerClass: number;
  /** Images per class of the downstream dataset. */
  downstreamPerClass: number;
  /** Pretraining epochs. */
  pretrainEpochs: number;
  /** Epochs of the downstream fine-tune that layerlens.json asks for. */
  finetuneEpochs: number;
}

export const fullScale: DemoScale = { size: 32, pretextPerClass: 200, downstreamPerClass: 20, pretrainEpochs: 18, finetuneEpochs: 30 };
export const smallScale: DemoScale = { size: 16, pretextPerClass: 4, downstreamPerClass: 4, pretrainEpochs: 1, finetuneEpochs: 2 };

/** Where everything is, relative to the demo folder. */
export function demoPaths(root: string) {
  const r = path.resolve(root);
  return {
    root: r,
    pretextDataset: path.join(r, 'datasets', 'shapes'),
    downstreamDataset: path.join(r, 'datasets', 'glyphs'),
    untrainedModel: path.join(r, 'models', 'untrained-cnn', 'model.json'),
    pretrainedModel: path.join(r, 'models', 'shapes-cnn', 'model.json'),
    images: path.join(r, 'images'),
    /** A pretext-style image (a star) the pretrained model knows. */
    sampleImage: path.join(r, 'images', 'star.png'),
    /** A downstream image (a heart) it has never seen. */
    downstreamImage: path.join(r, 'images', 'heart.png'),
    out: path.join(r, 'out'),
    complete: path.join(r, '.complete'),
  };
}
export type DemoPaths = ReturnType<typeof demoPaths>;

// ---------------------------------------------------------------------------
// Images

type Vec = [number, number];

function polygon(points: Vec[]): (u: number, v: number) => boolean {
  return (u, v) => {
    let inside = false;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = points[i];
      const [xj, yj] = points[j];
      if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  };
}

const regular = (n: number, r: number, phase = -Math.PI / 2): Vec[] =>
  Array.from({ length: n }, (_, k) => [r * Math.cos(phase + (2 * Math.PI * k) / n), r * Math.sin(phase + (2 * Math.PI * k) / n)]);

const star = (points: number, outer: number, inner: number): Vec[] =>
  Array.from({ length: points * 2 }, (_, k) => {
    const a = -Math.PI / 2 + (Math.PI * k) / points;
    const r = k % 2 === 0 ? outer : inner;
    return [r * Math.cos(a), r * Math.sin(a)];
  });

/** Each shape as an inside test in unit coordinates (the shape fills about [-1, 1]²). */
const shapes: Record<ShapeName, (u: number, v: number) => boolean> = {
  circle: (u, v) => u * u + v * v <= 0.85,
  ellipse: (u, v) => u * u + (v * v) / 0.3 <= 0.95,
  semicircle: (u, v) => u * u + (v + 0.4) * (v + 0.4) <= 1.1 && v + 0.4 >= 0,
  diamond: (u, v) => Math.abs(u) / 0.6 + Math.abs(v) <= 1,
  square: (u, v) => Math.abs(u) <= 0.78 && Math.abs(v) <= 0.78,
  triangle: polygon(regular(3, 1.05, -Math.PI / 2).map(([x, y]) => [x, y + 0.2] as Vec)),
  star: polygon(star(5, 1.05, 0.45)),
  cross: (u, v) => (Math.abs(u) <= 0.28 && Math.abs(v) <= 0.95) || (Math.abs(v) <= 0.28 && Math.abs(u) <= 0.95),
  ring: (u, v) => {
    const d = u * u + v * v;
    return d <= 0.9 && d >= 0.36;
  },
  hexagon: polygon(regular(6, 0.95, 0)),
  heart: (u, v) => {
    const x = u * 1.25;
    const y = -v * 1.25 + 0.25;
    const a = x * x + y * y - 1;
    return a * a * a - x * x * y * y * y <= 0;
  },
  crescent: (u, v) => u * u + v * v <= 0.9 && (u - 0.45) * (u - 0.45) + v * v >= 0.6,
  arrow: polygon([
    [-0.95, -0.22],
    [0.15, -0.22],
    [0.15, -0.6],
    [0.95, 0],
    [0.15, 0.6],
    [0.15, 0.22],
    [-0.95, 0.22],
  ]),
};

function hsv(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h * 6) % 6;
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return [f(5) * 255, f(3) * 255, f(1) * 255];
}

const luma = (c: number[]) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];

/**
 * One RGB image: a textured, noisy background (a colour gradient plus one of
 * stripes, blobs or speckle) and a shape in a contrasting colour, at a random
 * place, size and angle, anti-aliased by 3x3 supersampling.
 */
export function drawShape(shape: ShapeName, size: number, rng: Rng): Uint8Array {
  const bgHue = rng.next();
  const bg = hsv(bgHue, rng.uniform(0.15, 0.6), rng.uniform(0.3, 0.85));
  const bg2 = hsv((bgHue + rng.uniform(-0.15, 0.15) + 1) % 1, rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.85));
  let fg: [number, number, number];
  do fg = hsv(rng.next(), rng.uniform(0.4, 1), rng.uniform(0.2, 1));
  while (Math.abs(luma(fg) - luma(bg)) < 55);
  const texture = rng.int(3);
  const angle = rng.next() * Math.PI * 2;
  const freq = rng.uniform(0.15, 0.5);
  const tex = rng.uniform(4, 12);
  const blobs = Array.from({ length: 4 }, () => ({ x: rng.next() * size, y: rng.next() * size, r: rng.uniform(0.1, 0.3) * size, s: rng.uniform(-1, 1) }));
  const gradAngle = rng.next() * Math.PI * 2;
  const radius = rng.uniform(0.28, 0.4) * size;
  const margin = radius * 1.05;
  const cx = rng.uniform(margin, size - margin);
  const cy = rng.uniform(margin, size - margin);
  const rot = rng.next() * Math.PI * 2;
  const cos = Math.cos(rot);
  const sin = Math.sin(rot);
  const inside = shapes[shape];
  const noise = rng.uniform(2, 8);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      // Background: gradient between two colours, then the texture.
      const g = 0.5 + 0.5 * Math.sin(((x * Math.cos(gradAngle) + y * Math.sin(gradAngle)) / size) * Math.PI);
      let t = 0;
      if (texture === 0) t = tex * Math.sin((x * Math.cos(angle) + y * Math.sin(angle)) * freq * 2);
      else if (texture === 1) for (const b of blobs) t += tex * 1.5 * b.s * Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.r * b.r));
      else t = tex * (rng.next() - 0.5) * 1.5;
      // Coverage of the shape in this pixel.
      let cover = 0;
      for (let sy = 0; sy < 3; sy++) {
        for (let sx = 0; sx < 3; sx++) {
          const px = x + (sx + 0.5) / 3 - cx;
          const py = y + (sy + 0.5) / 3 - cy;
          const u = (px * cos + py * sin) / radius;
          const v = (-px * sin + py * cos) / radius;
          if (inside(u, v)) cover++;
        }
      }
      const a = cover / 9;
      for (let k = 0; k < 3; k++) {
        const back = bg[k] * (1 - g) + bg2[k] * g + t;
        const value = back * (1 - a) + fg[k] * a + noise * rng.normal();
        out[(y * size + x) * 3 + k] = value <= 0 ? 0 : value >= 255 ? 255 : Math.round(value);
      }
    }
  }
  return out;
}

function writeDataset(dir: string, classes: readonly ShapeName[], perClass: number, size: number, seed: number): void {
  for (const [ci, cls] of classes.entries()) {
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    const rng = new Rng(seed * 1000 + ci);
    for (let i = 0; i < perClass; i++) {
      const png = encodePng(size, size, drawShape(cls, size, rng), 3);
      fs.writeFileSync(path.join(dir, cls, `${cls}-${String(i).padStart(3, '0')}.png`), png);
    }
  }
}

// ---------------------------------------------------------------------------
// The model

/**
 * conv(relu)-pool x3, global average pooling, Dense softmax; seeded
 * initialisers. No BatchNormalization: on the wasm backend its gradient
 * (tfjs's FusedBatchNorm gradient, which tiles the batch statistics over
 * every pixel) costs more than the rest of the training step, 3.5x the whole
 * pretraining time here; without it the net needs centred inputs (minusOneOne)
 * to start learning soon.
 */
export function demoCnn(size: number, classes: number, seed = 42): tf.Sequential {
  const m = tf.sequential({ name: 'demo_cnn' });
  const filters = [16, 32, 64];
  let s = seed;
  for (const [i, f] of filters.entries()) {
    const n = i + 1;
    m.add(
      tf.layers.conv2d({
        ...(i === 0 ? { inputShape: [size, size, 3] } : {}),
        filters: f,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        kernelInitializer: tf.initializers.heNormal({ seed: s++ }),
        name: `conv${n}`,
      }),
    );
    m.add(tf.layers.maxPooling2d({ poolSize: 2, name: `pool${n}` }));
  }
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: s++ }), name: 'head' }));
  return m;
}

/** The demo's layer names, in order. */
export const demoLayerNames = ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'pool3', 'gap', 'head'];

/** The settings layerlens.json gives for the downstream fine-tune (and the comparison from scratch). */
export function downstreamSettings(scale: DemoScale): FinetuneSettings {
  return recipeSchema.parse({
    finetune: {
      epochs: scale.finetuneEpochs,
      batchSize: 8,
      learningRate: 0.01,
      validationFraction: 0.5,
      seed: 7,
      augment: { flip: { enabled: false } },
    },
  }).finetune;
}

// ---------------------------------------------------------------------------

export interface MakeDemoOptions {
  out: string;
  small?: boolean;
  force?: boolean;
  log?: (line: string) => void;
}

export interface MakeDemoResult {
  paths: DemoPaths;
  /** False when a complete demo of this version was already there. */
  generated: boolean;
  seconds: number;
}

function stamp(small: boolean): string {
  return JSON.stringify({ generator: GENERATOR_VERSION, scale: small ? 'small' : 'full' });
}

/** Whether `root` holds a complete demo made by this generator version at this scale. */
export function demoIsCurrent(root: string, small = false): boolean {
  try {
    return fs.readFileSync(demoPaths(root).complete, 'utf8').trim() === stamp(small);
  } catch {
    return false;
  }
}

const readmeText = (scale: DemoScale) => `# Layer Lens demo

Made by \`scripts/makeDemo.ts\` (seeded; regenerate with \`npx tsx scripts/makeDemo.ts --force\`).

- \`datasets/shapes/\`: the **pretext** task, ${pretextClasses.join(', ')} on noisy textured
  backgrounds, ${scale.pretextPerClass} images per class, ${scale.size}x${scale.size}.
- \`datasets/glyphs/\`: the **downstream** task, ${downstreamClasses.join(', ')}: other shapes,
  only ${scale.downstreamPerClass} images per class.
- \`models/untrained-cnn/\`: a small CNN (conv1-pool1 … conv3-pool3, gap, head) with random weights.
- \`models/shapes-cnn/\`: the same CNN pretrained on the shapes. Its \`layerlens.json\` freezes
  the backbone (conv1 ... gap) for the downstream fine-tune.
- \`images/\`: sample images to inspect (\`star.png\` is a pretext shape, \`heart.png\` a new one).

Try: open \`models/shapes-cnn/model.json\` in the Models view, **Layer Lens: Inspect Model** with
\`images/star.png\`, compare the feature maps with \`models/untrained-cnn\`, then
**Layer Lens: Fine-Tune…** on \`datasets/glyphs\`.
`;

/** Generates the demo into `out` (replacing what was there) unless it is current. */
export async function makeDemo(o: MakeDemoOptions): Promise<MakeDemoResult> {
  const started = performance.now();
  const log = o.log ?? (() => undefined);
  const small = o.small ?? false;
  const scale = small ? smallScale : fullScale;
  const p = demoPaths(o.out);
  if (!o.force && demoIsCurrent(p.root, small)) return { paths: p, generated: false, seconds: 0 };

  await initBackend({ prefer: 'wasm' });
  // Generated content only: the demo's own outputs (out/) and anything else there go too.
  for (const sub of ['datasets', 'models', 'images', 'out', 'README.md', '.complete']) fs.rmSync(path.join(p.root, sub), { recursive: true, force: true });
  fs.mkdirSync(p.root, { recursive: true });

  let t = performance.now();
  writeDataset(p.pretextDataset, pretextClasses, scale.pretextPerClass, scale.size, 1);
  writeDataset(p.downstreamDataset, downstreamClasses, scale.downstreamPerClass, scale.size, 2);
  fs.mkdirSync(p.images, { recursive: true });
  const sampleRng = new Rng(99);
  fs.writeFileSync(p.sampleImage, encodePng(scale.size, scale.size, drawShape('star', scale.size, sampleRng), 3));
  fs.writeFileSync(p.downstreamImage, encodePng(scale.size, scale.size, drawShape('heart', scale.size, sampleRng), 3));
  const nImages = scale.pretextPerClass * pretextClasses.length + scale.downstreamPerClass * downstreamClasses.length + 2;
  log(`Datasets: ${nImages} PNG images in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  // The untrained CNN, labelled with the pretext classes.
  const cnn = demoCnn(scale.size, pretextClasses.length);
  const untrainedDir = path.dirname(p.untrainedModel);
  fs.mkdirSync(untrainedDir, { recursive: true });
  const metadata = { labels: [...pretextClasses], normalization: 'minusOneOne', imageSize: [scale.size, scale.size], description: 'The demo CNN with seeded random weights (never trained).' };
  await writeArtifacts(untrainedDir, await modelArtifacts(cnn), { extraFiles: { 'metadata.json': JSON.stringify(metadata, null, 2) + '\n' } });
  cnn.dispose();
  const settings = downstreamSettings(scale);
  // The same settings, nothing frozen: the "from scratch" baseline.
  await writeRecipe(p.untrainedModel, recipeSchema.parse({ freeze: [], finetune: settings }));

  // Pretraining: the engine's fine-tune job on the pretext dataset, nothing frozen.
  t = performance.now();
  const pretrain = await finetune({
    modelJsonPath: p.untrainedModel,
    datasetDir: p.pretextDataset,
    settings: {
      epochs: scale.pretrainEpochs,
      batchSize: 16,
      learningRate: 0.003,
      validationFraction: 0.2,
      seed: 1,
      augment: { flip: { enabled: false } },
    },
    frozen: [],
    outDir: path.dirname(p.pretrainedModel),
    onProgress: (e) => {
      if (e.type === 'epoch') {
        const m = e.metrics;
        log(`  pretrain epoch ${m.epoch}/${e.epochs}: loss ${m.loss.toFixed(3)} acc ${m.acc.toFixed(3)}${m.val_acc !== undefined ? ` val_acc ${m.val_acc.toFixed(3)}` : ''}`);
      }
    },
  });
  const last = pretrain.metrics[pretrain.metrics.length - 1];
  log(`Pretrained on ${pretrain.trainSize} shapes in ${((performance.now() - t) / 1000).toFixed(1)} s: val_acc ${last.val_acc?.toFixed(3) ?? '-'}`);
  const metaFile = path.join(path.dirname(p.pretrainedModel), 'metadata.json');
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(metaFile, JSON.stringify({ description: `The demo CNN pretrained on the pretext task (${pretextClasses.join(', ')}).`, ...meta }, null, 2) + '\n');

  // The recipe: freeze the backbone (everything up to gap), train a new head.
  const loaded = await loadModel(p.pretrainedModel);
  const frozen = freezeUpTo(loaded.summary.layers, 'gap');
  disposeModel(loaded);
  await writeRecipe(p.pretrainedModel, recipeSchema.parse({ freeze: frozen, finetune: settings }));

  fs.writeFileSync(path.join(p.root, 'README.md'), readmeText(scale));
  fs.writeFileSync(p.complete, stamp(small) + '\n');
  return { paths: p, generated: true, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(__dirname, '..', 'demo') },
      small: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
    },
  });
  const r = await makeDemo({ out: values.out, small: values.small, force: values.force, log: (l) => process.stdout.write(l + '\n') });
  const shown = path.relative(process.cwd(), r.paths.root) || '.';
  process.stdout.write(r.generated ? `Demo written to ${shown}/ in ${r.seconds.toFixed(1)} s\n` : `Demo in ${shown}/ is current (generator v${GENERATOR_VERSION}); --force regenerates it\n`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`makeDemo: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
