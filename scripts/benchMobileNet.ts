/**
 * Fine-tuning the real transfer-learning model next to PyTorch: the Teachable
 * Machine export in ../shared/fixtures/teachable-machine-leaves (MobileNetV2
 * width 0.35, 224x224x3, then Dense(100) and Dense(2)), every layer trained,
 * Adam 1e-3, random inputs, one thread, against
 * ../shared/bench/torch_mobilenet_v2.py (torchvision's MobileNetV2 0.35 with
 * the same head, every layer trained, Adam, 1 thread).
 *
 * Each measurement is a fresh process (so that its peak resident memory is
 * its own), a warm-up step, then --steps timed steps; runs alternate A B A B
 * at each batch size. Printed per batch size: images/s and peak RSS of both,
 * and the ratios (ours / PyTorch: speed above 1 is faster, memory below 1 is
 * smaller). Then a profile of one step at the first batch size: time and
 * bytes left allocated per operation of the compiled step (forward and
 * backward of each layer kind; the convolutions are XNNPACK's, the rest
 * Layer Lens's SIMD kernels, src/engine/kernels/assembly).
 *
 * Usage: npx tsx scripts/benchMobileNet.ts [--batches 16,32,64] [--steps 4]
 *          [--pairs 2] [--no-torch] [--no-profile] [--model path/model.json]
 * Needs Debian's python3-torch and python3-torchvision for the peer.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend';
import { loadModel } from '../src/engine/model';
import { applyFreezePlan } from '../src/engine/train/freeze';
import { createOptimizer, partGradients, type Trainable } from '../src/engine/train/loop';
import { regularizationOf } from '../src/engine/train/replica';
import { trainingStep } from '../src/engine/train/step';
import type { ProfileEntry } from '../src/engine/train/step/executor';

const ROOT = path.resolve(__dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const TORCH = path.join(SHARED, 'bench', 'torch_mobilenet_v2.py');

interface Run {
  imagesPerSec: number;
  peakMB: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const flag = (name: string) => process.argv.includes(name);

/** The child: one model, one batch size, warm-up then timed steps; prints one JSON line. */
async function child(modelPath: string, batch: number, steps: number, profile: boolean): Promise<void> {
  const backend = await initBackend({ prefer: 'wasm' });
  const loaded = await loadModel(modelPath);
  const model = loaded.layers;
  if (!model) throw new Error(`${modelPath} is not a layers model`);
  applyFreezePlan(model, []);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const step = trainingStep(model, variables, { batchSize: batch, optimizer: 'adam' });
  const net: Trainable = {
    forward: (x, training) => model.apply(x, { training }) as tf.Tensor,
    outputKind: 'probabilities',
    regularization: regularizationOf(model),
    variables,
    state: model.weights,
    compiled: step.compiled,
    ...(step.microBatch ? { microBatch: step.microBatch } : {}),
  };
  const optimizer = createOptimizer('adam', 1e-3);
  const [h, w, c] = model.inputs[0].shape.slice(1) as number[];
  const classes = model.outputs[0].shape[1] as number;
  const xs = tf.randomUniform([batch, h, w, c], -1, 1);
  const ys = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % classes), 'int32'), classes).toFloat() as tf.Tensor2D;
  const entries: ProfileEntry[] = [];
  const once = (record: boolean) =>
    tf.tidy(() => {
      const compiled = net.compiled;
      const part = record && compiled
        ? compiled.gradients(xs, ys, { outputKind: 'probabilities', seed: 1, ...(net.microBatch ? { microBatch: net.microBatch } : {}), profile: (e: ProfileEntry) => entries.push(e) } as Parameters<typeof compiled.gradients>[2])
        : partGradients(net, xs, ys);
      const grads = variables.flatMap((v, i) => (part.grads[i] ? [{ name: v.name, tensor: part.grads[i]! }] : []));
      optimizer.applyGradients(grads);
      part.loss.dataSync();
    });
  once(false);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) once(false);
  const seconds = (performance.now() - t0) / 1000;
  if (profile) once(true);
  const peakMB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify({ backend: backend.name, step: step.line, imagesPerSec: (batch * steps) / seconds, peakMB, profile: profile ? entries : undefined })}\n`);
}

function runOurs(modelPath: string, batch: number, steps: number, profile = false): (Run & { step: string; profile?: ProfileEntry[] }) | undefined {
  const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, '--child', '--model', modelPath, '--batch', String(batch), '--steps', String(steps), ...(profile ? ['--profile'] : [])], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    console.log(`  ours at batch ${batch} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    return undefined;
  }
}

function runTorch(batch: number, steps: number, classes: number): Run | undefined {
  const r = spawnSync('/usr/bin/python3', [TORCH, '--batch', String(batch), '--steps', String(steps), '--threads', '1', '--classes', String(classes)], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = /No module named '(torch|torchvision)'/.test(r.stderr ?? '') ? 'PyTorch is not installed (apt-get install python3-torch python3-torchvision)' : (r.stderr || '').trim().split('\n').pop();
    console.log(`  PyTorch at batch ${batch} failed: ${why}`);
    return undefined;
  }
  const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { images_per_s: number; peak_rss_mb: number };
  return { imagesPerSec: j.images_per_s, peakMB: j.peak_rss_mb };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (r: Run) => `${r.imagesPerSec.toFixed(1).padStart(6)} img/s  ${Math.round(r.peakMB).toString().padStart(5)} MB`;

function printProfile(entries: ProfileEntry[]): void {
  const by = new Map<string, { ms: number; bytes: number; calls: number }>();
  for (const e of entries) {
    const a = by.get(e.op) ?? { ms: 0, bytes: 0, calls: 0 };
    a.ms += e.ms;
    a.bytes += e.bytes;
    a.calls++;
    by.set(e.op, a);
  }
  const total = [...by.values()].reduce((s, a) => s + a.ms, 0);
  console.log(`\nOne step, per operation (ms; MB left allocated by it, negative when it freed more; share of the step):`);
  console.log(`  ${'operation'.padEnd(32)} ${'ms'.padStart(7)} ${'MB'.padStart(7)} ${'share'.padStart(6)} calls`);
  for (const [op, a] of [...by].sort((x, y) => y[1].ms - x[1].ms)) {
    console.log(`  ${op.padEnd(32)} ${a.ms.toFixed(0).padStart(7)} ${(a.bytes / 1048576).toFixed(0).padStart(7)} ${((100 * a.ms) / total).toFixed(1).padStart(5)}% ${String(a.calls).padStart(5)}`);
  }
  console.log(`  ${'total'.padEnd(32)} ${total.toFixed(0).padStart(7)}`);
}

async function main(): Promise<void> {
  const modelPath = path.resolve(arg('--model', path.join(SHARED, 'fixtures', 'teachable-machine-leaves', 'model.json')));
  const steps = Number(arg('--steps', '4'));
  if (flag('--child')) return child(modelPath, Number(arg('--batch', '32')), steps, flag('--profile'));
  if (!fs.existsSync(modelPath)) {
    console.log(`${modelPath} not found: the benchmark needs ../shared/fixtures/teachable-machine-leaves next to the repo, or --model.`);
    process.exitCode = 1;
    return;
  }
  const batches = arg('--batches', '16,32,64').split(',').map(Number);
  const pairs = Number(arg('--pairs', '2'));
  const withTorch = !flag('--no-torch') && fs.existsSync(TORCH);
  if (!flag('--no-torch') && !withTorch) console.log(`${TORCH} not found: PyTorch skipped`);
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`MobileNetV2 0.35 (${path.relative(ROOT, modelPath)}), every layer trained, Adam, 1 thread; ${steps} timed steps after a warm-up, fresh process per run; load average ${load}`);
  let classes = 2;
  try {
    classes = JSON.parse(fs.readFileSync(path.join(path.dirname(modelPath), 'metadata.json'), 'utf8')).labels.length ?? 2;
  } catch {
    // A model without Teachable Machine metadata: the torch head's classes stay 2.
  }
  const rows: string[] = [];
  for (const batch of batches) {
    console.log(`\nbatch ${batch}:`);
    const ours: Run[] = [];
    const torch: Run[] = [];
    for (let p = 0; p < pairs; p++) {
      const a = runOurs(modelPath, batch, steps);
      if (a) {
        ours.push(a);
        console.log(`  A  Layer Lens (wasm)  ${fmt(a)}${p === 0 ? `   ${a.step}` : ''}`);
      }
      if (withTorch) {
        const b = runTorch(batch, steps, classes);
        if (b) {
          torch.push(b);
          console.log(`  B  PyTorch            ${fmt(b)}`);
        }
      }
    }
    if (ours.length && torch.length) {
      const speed = mean(ours.map((o) => o.imagesPerSec)) / mean(torch.map((t) => t.imagesPerSec));
      const memory = mean(ours.map((o) => o.peakMB)) / mean(torch.map((t) => t.peakMB));
      const line = `batch ${batch}: speed ${speed.toFixed(2)}x PyTorch (${mean(ours.map((o) => o.imagesPerSec)).toFixed(1)} vs ${mean(torch.map((t) => t.imagesPerSec)).toFixed(1)} img/s), peak memory ${memory.toFixed(2)}x (${Math.round(mean(ours.map((o) => o.peakMB)))} vs ${Math.round(mean(torch.map((t) => t.peakMB)))} MB)`;
      rows.push(line);
      console.log(`  ${line}`);
    }
  }
  if (rows.length) console.log(`\nSummary (ours / PyTorch, means of ${pairs} pairs):\n${rows.map((r) => `  ${r}`).join('\n')}`);
  if (!flag('--no-profile')) {
    const r = runOurs(modelPath, batches[0], 1, true);
    if (r?.profile) printProfile(r.profile);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
