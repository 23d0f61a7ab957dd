/**
 * ONNX models, two figures on MobileNetV2 at 224x224 (written by our own
 * writer as PyTorch exports it: scripts/onnx/mobilenetV2.ts; or --model
 * <file.onnx>, e.g. torchvision's own export):
 *
 * 1. An inspection (every node's output, per-node mean and zeros, top-k) over
 *    one plain ONNX Runtime run of the same model with every optimisation
 *    (goal: at most 1.3x). Both start from the decoded image, preprocessing
 *    included; runs interleaved in alternating order; medians.
 * 2. Head training on the ONNX backbone: the seconds of epochs 2.. with the
 *    embedding cache (the backbone runs once per image, in epoch 1) against
 *    the same run re-running the backbone every epoch (goal: at least 10x).
 *
 *   npx tsx scripts/benchOnnx.ts [--model file.onnx] [--repeats 20] [--images 24] [--epochs 4] [--skip-train]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/engine/backend';
import { toInputTensor, type DecodedImage } from '../src/engine/image';
import { Inspector } from '../src/engine/inspect/inspector';
import { disposeModel, loadModel } from '../src/engine/model';
import { finetuneOnnx } from '../src/engine/onnx/finetune';
import { runAllNodes } from '../src/engine/onnx/inspect';
import type { EpochMetrics } from '../src/protocol/train';
import { makeStripesDataset } from '../test/fixtures/models';
import { mobilenetV2Onnx } from './onnx/mobilenetV2';
import { median } from './stats';

const ms = (x: number) => `${x.toFixed(1)} ms`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, repeats: { type: 'string' }, images: { type: 'string' }, epochs: { type: 'string' }, 'skip-train': { type: 'boolean' } } });
  await initBackend({ prefer: 'wasm' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-bench-onnx-'));
  try {
    const modelPath = values.model ? path.resolve(values.model) : path.join(tmp, 'mobilenet_v2.onnx');
    if (!values.model) fs.writeFileSync(modelPath, mobilenetV2Onnx());
    const loaded = await loadModel(modelPath);
    const onnx = loaded.onnx!;
    const repeats = Number(values.repeats ?? 20);
    process.stdout.write(`${path.basename(modelPath)}: ${loaded.summary.layers.length} nodes, ${loaded.summary.totalParams.toLocaleString('en-US')} params, input [${onnx.inputDims.map((d) => d ?? '?').join(', ')}]; ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);

    // 1. Inspection vs a plain run.
    const image: DecodedImage = { width: 224, height: 224, data: Uint8Array.from({ length: 224 * 224 * 3 }, (_, i) => (i * 7919) % 251) };
    const inspector = new Inspector();
    const plain = async () => {
      const x = toInputTensor(image, 224, 224, 'imagenet', 3);
      const data = x.dataSync() as Float32Array;
      x.dispose();
      const out = await onnx.predict({ data, dims: [1, 224, 224, 3] });
      let best = 0;
      for (let i = 1; i < out.data.length; i++) if (out.data[i] > out.data[best]) best = i;
      return best;
    };
    const inspect = () => inspector.inspectImage(loaded, image, 'bench.png', 'imagenet');
    const probeOnly = async () => {
      const x = toInputTensor(image, 224, 224, 'imagenet', 3);
      const data = x.dataSync() as Float32Array;
      x.dispose();
      return runAllNodes(onnx, { data, dims: [1, 224, 224, 3] });
    };
    for (let i = 0; i < 3; i++) {
      await plain();
      await inspect();
    }
    const tPlain: number[] = [];
    const tInspect: number[] = [];
    const tProbe: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const order = i % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
      for (const k of order) {
        const t0 = performance.now();
        if (k === 0) await plain();
        else if (k === 1) await inspect();
        else await probeOnly();
        (k === 0 ? tPlain : k === 1 ? tInspect : tProbe).push(performance.now() - t0);
      }
    }
    const last = await inspect();
    inspector.dispose();
    const p = median(tPlain);
    const a = median(tInspect);
    process.stdout.write(
      `Inspection (${last.layers.length} nodes' outputs, statistics, top-5): median ${ms(a)} vs plain ONNX Runtime run ${ms(p)}: ${(a / p).toFixed(2)}x (goal ≤ 1.3x)\n` +
        `  of which the run fetching every node's output: ${ms(median(tProbe))} (${(median(tProbe) / p).toFixed(2)}x)\n`,
    );

    // 2. Head training: epochs after the first, cached vs re-running the backbone.
    if (!values['skip-train']) {
      const perClass = Math.max(2, Math.round(Number(values.images ?? 24) / 3));
      const dataset = makeStripesDataset(path.join(tmp, 'stripes'), { size: 224, perClass, jpegEvery: 0 });
      const epochs = Math.max(2, Number(values.epochs ?? 4));
      const run = async (embeddingCache: boolean): Promise<EpochMetrics[]> => {
        const r = await finetuneOnnx({
          modelJsonPath: modelPath,
          datasetDir: dataset,
          settings: { epochs, batchSize: 8, validationFraction: 0.25, seed: 1, normalization: 'imagenet' },
          frozen: [],
          embeddingCache,
          outDir: path.join(tmp, `out-${embeddingCache ? 'cached' : 'uncached'}`),
          onProgress: () => undefined,
        });
        return r.metrics;
      };
      const later = (m: EpochMetrics[]) => median(m.slice(1).map((e) => e.seconds));
      const cached = await run(true);
      const uncached = await run(false);
      const c = later(cached);
      const u = later(uncached);
      process.stdout.write(
        `Head training on the ONNX backbone (${perClass * 3} images at 224x224, ${epochs} epochs): epoch 1 ${cached[0].seconds.toFixed(2)} s; epochs 2-${epochs} median ${(c * 1000).toFixed(0)} ms cached vs ${(u * 1000).toFixed(0)} ms re-running the backbone: ${(u / c).toFixed(1)}x (goal ≥ 10x)\n`,
      );
    }
    disposeModel(loaded);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
