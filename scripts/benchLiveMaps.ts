/**
 * What live maps cost a fine-tune: the same run with and without the probe
 * (a probe image's feature maps of one layer before training and after every
 * epoch), alternated A B A B in one process so that warm-up, caches and the
 * machine's load hit both alike. Prints each run's wall-clock and CPU seconds,
 * the probe's own time, the with/without ratio of the medians (the target is
 * at most 1.05) and the spread of the runs without the probe (on a busy
 * machine the wall clock of identical runs varies far more than 5%; the
 * probe's own share of the run is then the figure to read).
 *
 * Two cases:
 * - a full fine-tune (nothing frozen, the probe on a trained conv layer): the
 *   usual case, every epoch probed;
 * - a frozen backbone whose outputs are cached (epochs of a few milliseconds
 *   train only the head): the probe's budget makes it skip the epochs it
 *   cannot pay for, and a probe on the frozen backbone is computed once. The
 *   pass before training (a few ms) is then a visible share of a run that
 *   lasts a tenth of a second.
 *
 *   npx tsx scripts/benchLiveMaps.ts [--backend wasm|cpu|tensorflow] [--epochs 5] [--per-class 40] [--pairs 3]
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, type BackendPreference } from '../src/engine/backend';
import { LiveMapsProbe } from '../src/engine/compare/probe';
import { modelArtifacts, writeArtifacts } from '../src/engine/io/save';
import { finetune } from '../src/engine/train/finetune';
import type { FinetuneSettingsInput } from '../src/protocol/train';
import { makeStripesDataset, seedWeights, stripesClasses } from '../test/fixtures/models';
import { median } from './stats';

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

interface Run {
  wall: number;
  cpu: number;
  probeMs: number;
  probes: number;
  skipped: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'wasm' },
      epochs: { type: 'string', default: '5' },
      'per-class': { type: 'string', default: '40' },
      pairs: { type: 'string', default: '3' },
    },
  });
  const backend = await initBackend({ prefer: values.backend as BackendPreference });
  const epochs = Number(values.epochs);
  const pairs = Number(values.pairs);
  const size = 64;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-bench-live-'));
  try {
    const dataset = makeStripesDataset(path.join(tmp, 'data'), { size, perClass: Number(values['per-class']), seed: 5 });
    const probeImage = path.join(dataset, stripesClasses[0], fs.readdirSync(path.join(dataset, stripesClasses[0])).sort()[0]);
    const modelDir = path.join(tmp, 'models', 'bench-cnn');
    fs.mkdirSync(modelDir, { recursive: true });
    const cnn = smallCnn(size);
    await writeArtifacts(modelDir, await modelArtifacts(cnn), { extraFiles: { 'metadata.json': JSON.stringify({ labels: stripesClasses, normalization: 'zeroOne' }) } });
    cnn.dispose();
    const modelJsonPath = path.join(modelDir, 'model.json');
    fs.mkdirSync(path.join(tmp, 'out'));
    process.stdout.write(`backend ${backend.name}; ${Number(values['per-class']) * 3} images of ${size}x${size}; ${epochs} epochs; ${pairs} pairs A B (A without, B with the probe)\n`);

    let n = 0;
    const run = async (settings: FinetuneSettingsInput, frozen: string[], layer: string | undefined): Promise<Run> => {
      const probe = layer ? new LiveMapsProbe({ imagePath: probeImage, layerPath: layer }) : undefined;
      let probeMs = 0;
      let probes = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      try {
        await finetune({
          modelJsonPath,
          datasetDir: dataset,
          settings,
          frozen,
          outDir: path.join(tmp, 'out', `run-${++n}`),
          probe,
          onProgress: (p) => {
            if (p.type !== 'probe') return;
            probeMs += p.ms;
            probes++;
          },
        });
      } finally {
        probe?.dispose();
      }
      const used = process.cpuUsage(cpu0);
      return { wall: (performance.now() - t0) / 1000, cpu: (used.user + used.system) / 1e6, probeMs, probes, skipped: probe?.skipped ?? 0 };
    };

    const compare = async (label: string, settings: FinetuneSettingsInput, frozen: string[], layer: string) => {
      process.stdout.write(`\n${label} (probe on ${layer})\n`);
      // One unmeasured run of each first: JIT and wasm allocations.
      await run(settings, frozen, undefined);
      await run(settings, frozen, layer);
      const a: Run[] = [];
      const b: Run[] = [];
      for (let i = 0; i < pairs; i++) {
        a.push(await run(settings, frozen, undefined));
        b.push(await run(settings, frozen, layer));
        const [x, y] = [a[i], b[i]];
        process.stdout.write(
          `  pair ${i + 1}: without ${x.wall.toFixed(2)} s wall / ${x.cpu.toFixed(2)} s CPU; with ${y.wall.toFixed(2)} s / ${y.cpu.toFixed(2)} s ` +
            `(${y.probes} probes, ${y.skipped} epochs skipped, ${y.probeMs.toFixed(0)} ms in the probe)\n`,
        );
      }
      const wall = median(b.map((r) => r.wall)) / median(a.map((r) => r.wall));
      const cpu = median(b.map((r) => r.cpu)) / median(a.map((r) => r.cpu));
      const share = median(b.map((r) => r.probeMs / 1000 / r.wall));
      // How much identical runs without the probe differ: the noise any ratio above sits in.
      const spread = (xs: number[]) => ((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100;
      process.stdout.write(`  ratio with/without (medians): ${wall.toFixed(3)} wall clock, ${cpu.toFixed(3)} CPU; the probe's own time is ${(share * 100).toFixed(2)}% of the run\n`);
      process.stdout.write(`  noise: the runs without the probe spread over ${spread(a.map((r) => r.cpu)).toFixed(0)}% (CPU) and ${spread(a.map((r) => r.wall)).toFixed(0)}% (wall clock) of their median\n`);
    };

    const base: FinetuneSettingsInput = { epochs, batchSize: 32, learningRate: 0.01, augment: { flip: { enabled: false } } };
    await compare('full fine-tune', base, [], 'conv2');
    const backbone = ['conv1', 'pool1', 'conv2', 'pool2', 'conv3', 'gap'];
    await compare('frozen backbone, cached outputs', base, backbone, 'head');
    await compare('frozen backbone, cached outputs', base, backbone, 'conv3');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  process.stderr.write(`benchLiveMaps: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
