/**
 * How much an inspection (every layer's output kept, per-layer mean and
 * zeros, top-k) costs over one plain predict, on a MobileNet-sized model at
 * 224x224: the Teachable Machine export in ../shared/fixtures when present,
 * else a MobileNet-like model built here. Target: at most 1.3x.
 *
 *   npx tsx scripts/benchInspect.ts [--backend wasm|cpu|tensorflow] [--repeats 30] [--synthetic]
 *
 * --synthetic uses the built-in MobileNet-like model even when the export is there.
 *
 * Both paths start from the decoded image (preprocessing included in both),
 * and end when their numbers are on the JS side. Runs are interleaved, in
 * alternating order, so that a busy machine slows both alike; medians and
 * minima are reported.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, type BackendPreference } from '../src/engine/backend';
import { toInputTensor, type DecodedImage } from '../src/engine/image';
import { Inspector } from '../src/engine/inspect/inspector';
import { loadModel, summarize, type LoadedModel } from '../src/engine/model';
import { median } from './stats';

const tmPath = path.resolve(__dirname, '../../shared/fixtures/teachable-machine-leaves/model.json');

/** MobileNet v1 (alpha 0.5) shaped: 28 conv layers, ~0.8 M params, 224x224x3 → 10 classes. */
function mobilenetLike(): tf.LayersModel {
  const input = tf.input({ shape: [224, 224, 3] });
  const bnRelu = (x: tf.SymbolicTensor, name: string) =>
    tf.layers.reLU({ maxValue: 6, name: `${name}_relu` }).apply(tf.layers.batchNormalization({ name: `${name}_bn` }).apply(x)) as tf.SymbolicTensor;
  let x = bnRelu(tf.layers.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', useBias: false, name: 'conv1' }).apply(input) as tf.SymbolicTensor, 'conv1');
  const blocks: [number, number][] = [[32, 1], [64, 2], [64, 1], [128, 2], [128, 1], [256, 2], [256, 1], [256, 1], [256, 1], [256, 1], [256, 1], [512, 2], [512, 1]];
  blocks.forEach(([filters, stride], i) => {
    x = bnRelu(tf.layers.depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', useBias: false, name: `dw${i}` }).apply(x) as tf.SymbolicTensor, `dw${i}`);
    x = bnRelu(tf.layers.conv2d({ filters, kernelSize: 1, useBias: false, name: `pw${i}` }).apply(x) as tf.SymbolicTensor, `pw${i}`);
  });
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'head' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'mobilenet_like' });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { backend: { type: 'string' }, repeats: { type: 'string' }, synthetic: { type: 'boolean' } } });
  const backend = await initBackend({ prefer: (values.backend as BackendPreference | undefined) ?? 'wasm' });
  const repeats = Number(values.repeats ?? 30);
  let loaded: LoadedModel;
  if (fs.existsSync(tmPath) && !values.synthetic) {
    loaded = await loadModel(tmPath);
  } else {
    if (!values.synthetic) process.stdout.write('(no ../shared/fixtures: using a MobileNet-like model built in this script)\n');
    const m = mobilenetLike();
    loaded = { files: { modelJsonPath: 'mobilenet_like/model.json', folder: '.', format: 'layers', artifacts: {}, layerClasses: [], warnings: [] }, summary: summarize(m, path.resolve('mobilenet_like/model.json')), layers: m };
  }
  const model = loaded.layers!;
  const image: DecodedImage = { width: 224, height: 224, data: Uint8Array.from({ length: 224 * 224 * 3 }, (_, i) => (i * 7919) % 251) };
  const inspector = new Inspector();

  const predict = async () => {
    const y = tf.tidy(() => model.predict(tf.expandDims(toInputTensor(image, 224, 224, 'minusOneOne'), 0)) as tf.Tensor);
    await y.data();
    y.dispose();
  };
  const inspect = async () => {
    await inspector.inspectImage(loaded, image, 'bench', 'minusOneOne', { topK: 5 });
  };
  const grid = async () => {
    await inspector.layerMaps(loaded.summary.modelPath, loaded.summary.layers.find((l) => l.name === 'Conv1' || l.name === 'conv1')!.path, 64);
  };

  for (let i = 0; i < 3; i++) {
    await predict();
    await inspect();
  }
  const tp: number[] = [];
  const ti: number[] = [];
  const tg: number[] = [];
  const timed = async (f: () => Promise<void>, into: number[]) => {
    const t0 = performance.now();
    await f();
    into.push(performance.now() - t0);
  };
  for (let i = 0; i < repeats; i++) {
    // Alternate the order: whichever runs second finds the caches warm.
    if (i % 2 === 0) {
      await timed(predict, tp);
      await timed(inspect, ti);
    } else {
      await timed(inspect, ti);
      await timed(predict, tp);
    }
    await timed(grid, tg);
  }
  const layers = loaded.summary.layers.length;
  const maps = inspector.lastResult(loaded.summary.modelPath)!.layers.filter((l) => l.kind === 'map').length;
  const p = median(tp);
  const q = median(ti);
  process.stdout.write(
    [
      `model: ${loaded.summary.name}, ${layers} layers (${maps} with feature maps), ${loaded.summary.totalParams.toLocaleString('en-US')} params; backend ${backend.name}; ${repeats} interleaved runs after 3 warm-ups, medians`,
      `plain predict:                     median ${p.toFixed(1)} ms, min ${Math.min(...tp).toFixed(1)} ms`,
      `inspect (all layers kept + stats): median ${q.toFixed(1)} ms, min ${Math.min(...ti).toFixed(1)} ms`,
      `ratio inspect / predict:           ${(q / p).toFixed(2)}x by medians, ${(Math.min(...ti) / Math.min(...tp)).toFixed(2)}x by minima (target <= 1.3x)`,
      `one layer's 64 px grid on demand:  median ${median(tg).toFixed(1)} ms`,
      `tensors kept between calls: ${tf.memory().numTensors}`,
    ].join('\n') + '\n',
  );
  inspector.dispose();
}

void main();
