/**
 * Fine-tune throughput, and what the embedding cache buys: a small CNN
 * (64x64 RGB, three conv blocks, ~24k params) on a generated 3-class dataset,
 * trained with its backbone frozen and no augmentation, once with the cache
 * (epochs after the first train the head on stored backbone outputs) and once
 * without (every epoch runs the backbone). Prints the seconds per epoch after
 * the first for both and their ratio, then the throughput of a full fine-tune
 * (nothing frozen, augmentation on).
 *
 * The first cached epochs still warm up (JIT, wasm allocations), so the later
 * epochs are averaged over a run long enough to reach steady state.
 *
 *   npx tsx scripts/benchFinetune.ts [--backend wasm|cpu|tensorflow] [--epochs 10] [--per-class 60]
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, type BackendPreference } from '../src/engine/backend';
import { modelArtifacts, writeArtifacts } from '../src/engine/io/save';
import { finetune } from '../src/engine/train/finetune';
import type { EpochMetrics, FinetuneSettingsInput } from '../src/protocol/train';
import { makeStripesDataset, seedWeights, stripesClasses } from '../test/fixtures/models';

function smallCnn(size: number): tf.Sequential {
  const m = tf.sequential({ name: 'bench_cnn' });
  m.add(tf.layers.conv2d({ inputShape: [size, size, 3], filters: 16, kernelSize: 3, activation: 'relu', padding: 'same', name: 'conv1' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  m.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu', padding: 'same', name: 'conv2' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool2' }));
  m.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', padding: 'same', name: 'conv3' }));
  m.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }));
  seedWeights(m, 1);
  return m;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { backend: { type: 'string', default: 'wasm' }, epochs: { type: 'string', default: '10' }, 'per-class': { type: 'string', default: '60' } } });
  const backend = await initBackend({ prefer: values.backend as BackendPreference });
  const epochs = Number(values.epochs);
  const size = 64;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-bench-'));
  try {
    const dataset = makeStripesDataset(path.join(tmp, 'data'), { size, perClass: Number(values['per-class']), seed: 5 });
    const modelDir = path.join(tmp, 'models', 'bench-cnn');
    fs.mkdirSync(modelDir, { recursive: true });
    const cnn = smallCnn(size);
    await writeArtifacts(modelDir, await modelArtifacts(cnn), { extraFiles: { 'metadata.json': JSON.stringify({ labels: stripesClasses, normalization: 'zeroOne' }) } });
    const params = cnn.countParams();
    cnn.dispose();
    const modelJsonPath = path.join(modelDir, 'model.json');
    fs.mkdirSync(path.join(tmp, 'out'));
    process.stdout.write(`backend ${backend.name}; ${params.toLocaleString('en-US')} params; ${Number(values['per-class']) * 3} images of ${size}x${size}; ${epochs} epochs, batch 32\n`);

    // Wall-clock seconds per epoch come from the metrics; CPU seconds are
    // measured here too, since a busy machine stretches the wall clock of the
    // fast (cached) epochs far more than their work.
    const run = async (label: string, settings: FinetuneSettingsInput, frozen: string[], embeddingCache: boolean): Promise<{ metrics: EpochMetrics[]; cpu: number[] }> => {
      const cpu: number[] = [];
      let mark = process.cpuUsage();
      const r = await finetune({
        modelJsonPath,
        datasetDir: dataset,
        settings,
        frozen,
        embeddingCache,
        outDir: path.join(tmp, 'out', label.replace(/\W+/g, '-')),
        onProgress: (p) => {
          if (p.type === 'start') mark = process.cpuUsage();
          if (p.type !== 'epoch') return;
          const used = process.cpuUsage(mark);
          cpu.push((used.user + used.system) / 1e6);
          mark = process.cpuUsage();
        },
      });
      const later = r.metrics.slice(1);
      process.stdout.write(
        `${label.padEnd(28)} epoch 1 ${r.metrics[0].seconds.toFixed(2)} s; later epochs ${mean(later.map((m) => m.seconds)).toFixed(3)} s wall, ` +
          `${mean(cpu.slice(1)).toFixed(3)} s CPU, ${Math.round(mean(later.map((m) => m.imagesPerSec)))} img/s (cache ${r.embeddingCache ? 'on' : 'off'})\n`,
      );
      return { metrics: r.metrics, cpu };
    };
    const frozenSettings: FinetuneSettingsInput = { epochs, batchSize: 32, learningRate: 0.01, augment: { flip: { enabled: false } } };
    const frozen = ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'gap'];
    const withCache = await run('frozen backbone, cache', frozenSettings, frozen, true);
    const without = await run('frozen backbone, no cache', frozenSettings, frozen, false);
    const wall = mean(without.metrics.slice(1).map((m) => m.seconds)) / mean(withCache.metrics.slice(1).map((m) => m.seconds));
    const cpu = mean(without.cpu.slice(1)) / mean(withCache.cpu.slice(1));
    process.stdout.write(`embedding cache: epochs after the first are ${wall.toFixed(1)}x faster (wall clock), ${cpu.toFixed(1)}x less CPU\n`);
    await run('full fine-tune, augmented', { ...frozenSettings, augment: { flip: { enabled: true }, rotate: { enabled: true, degrees: 15 } } }, [], true);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  process.stderr.write(`benchFinetune: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
