/**
 * Training throughput of the small benchmark CNN on tfjs's wasm backend with
 * our training kernels (src/engine/kernels), on wasm with tfjs's own kernels
 * in place of our replacements, and on the pure-JS cpu backend; optionally
 * against PyTorch on the CPU.
 *
 * The model matches /work/shared/bench/torch_small_cnn.py: 64x64x3 input,
 * conv3x3(16)+ReLU, maxpool2, conv3x3(32)+ReLU, maxpool2, conv3x3(64)+ReLU,
 * global average pool, dense(10); 'valid' padding; Adam 1e-3; batch 32;
 * random data. Each configuration trains a warm-up epoch, then a timed one.
 *
 * Two clocks are reported: wall time, and the CPU time of this process (all
 * its threads). On one thread, on a machine shared with other work, the CPU
 * time is the steadier measure (the load average is printed first). With
 * several threads the CPU time sums them: images per CPU-second then measure
 * efficiency, and only wall time shows the speed-up, so read both.
 *
 * Usage: npx tsx scripts/benchTrain.ts [--images N] [--cpu-images N]
 *                                      [--profile] [--torch] [--no-cpu]
 *                                      [--threads 1,2]
 *   --images N      images per wasm epoch (default 256, 8 steps)
 *   --cpu-images N  images per timed cpu epoch (default 8). tfjs's cpu
 *                   backend needs ~3 s of CPU per image here, so its default
 *                   epoch is a single partial batch; its cost per image does
 *                   not depend on the batch size. Warm-up: a quarter of that.
 *   --profile       also print where one wasm training step spends its time,
 *                   per kernel, exclusive of the kernels nested inside ours
 *   --torch         also run torch_small_cnn.py (1 thread) alternately with
 *                   wasm, A B A B, and print the ratios, by wall clock (as
 *                   the script reports it) and by CPU time
 *   --no-cpu        skip the cpu backend
 *   --threads 1,2   train with the engine's own loop (src/engine/train/loop.ts,
 *                   as a fine-tune does) at each of these thread counts
 *                   (data-parallel helper threads, src/engine/train/parallel.ts);
 *                   with --torch, PyTorch at the same counts, alternating
 *                   A B A B per count, and the ratios per count. On Linux
 *                   each thread's CPU time is read too: the busiest thread's
 *                   bounds the speed on free cores (printed as an estimate)
 */
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend';
import { REPLACED_KERNELS, setWasmKernelReplacements } from '../src/engine/kernels';
import { trainLoop, type Batch, type Trainable, type TrainData } from '../src/engine/train/loop';
import { ParallelStepRunner } from '../src/engine/train/parallel';
import { trainingStep } from '../src/engine/train/step';
import { statisticsOf } from '../src/engine/train/replica';
import { runTorch, torchScript, torchVersion, type TorchResult } from './torchPeer';

const BATCH = 32;
const SIZE = 64;
const CLASSES = 10;
/** The two replacements the step profile showed dominant (see kernels/index.ts). */
const TRAINING_REPLACEMENTS = [tf.Conv2DBackpropInput, tf.MaxPoolGrad];
/** Width of the label column. */
const LABEL = 50;

function flag(name: string): boolean {
  return process.argv.includes(name);
}

function listOption(name: string): number[] | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const raw = process.argv[i + 1] ?? '';
  const v = raw.split(',').map(Number);
  if (v.length === 0 || v.some((n) => !Number.isInteger(n) || n < 1 || n > 8)) throw new Error(`${name} needs thread counts from 1 to 8 separated by commas, got '${raw}'`);
  return v;
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} needs a positive whole number, got '${process.argv[i + 1]}'`);
  return v;
}

function buildModel(): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [SIZE, SIZE, 3], filters: 16, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.globalAveragePooling2d({}));
  model.add(tf.layers.dense({ units: CLASSES }));
  // The dense layer outputs logits, as in the torch script (CrossEntropyLoss).
  model.compile({
    optimizer: tf.train.adam(1e-3),
    loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred),
  });
  return model;
}

interface Session {
  model: tf.Sequential;
  xs: tf.Tensor4D;
  ys: tf.Tensor2D;
}

function makeSession(images: number): Session {
  return {
    model: buildModel(),
    xs: tf.randomNormal([images, SIZE, SIZE, 3]),
    ys: tf.tidy(() => tf.oneHot(tf.randomUniform([images], 0, CLASSES, 'int32') as tf.Tensor1D, CLASSES).toFloat()) as tf.Tensor2D,
  };
}

function disposeSession(s: Session): void {
  s.model.dispose();
  tf.dispose([s.xs, s.ys]);
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface Timing {
  wall: number;
  cpu: number;
}

/** Wall and CPU seconds for one epoch over `images` of the session's images. */
async function epoch(s: Session, images = s.xs.shape[0]): Promise<Timing> {
  const xs = images === s.xs.shape[0] ? s.xs : tf.slice(s.xs, 0, images);
  const ys = images === s.ys.shape[0] ? s.ys : tf.slice(s.ys, 0, images);
  try {
    const wall0 = performance.now();
    const cpu0 = cpuSeconds();
    await s.model.fit(xs, ys, { batchSize: BATCH, epochs: 1, shuffle: false, verbose: 0 });
    return { wall: (performance.now() - wall0) / 1000, cpu: cpuSeconds() - cpu0 };
  } finally {
    if (xs !== s.xs) tf.dispose([xs, ys]);
  }
}

interface Result {
  label: string;
  /** Images per second of wall time. */
  wall: number;
  /** Images per second of this process's CPU time. */
  cpu: number;
  /**
   * Several threads: images per second of the busiest training thread's CPU
   * time, i.e. the speed if each thread had a core of its own (Linux only).
   */
  busiest?: number;
}

/** CPU seconds of each thread of this process by thread id (Linux's /proc), empty elsewhere. */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  const dir = '/proc/self/task';
  if (!fs.existsSync(dir)) return out;
  const tick = 100; // USER_HZ
  for (const tid of fs.readdirSync(dir)) {
    try {
      const fields = fs.readFileSync(path.join(dir, tid, 'stat'), 'utf8').split(') ')[1].split(' ');
      out.set(tid, (Number(fields[11]) + Number(fields[12])) / tick);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

function report(label: string, images: number, t: Timing): Result {
  const r = { label, wall: images / t.wall, cpu: images / t.cpu };
  // Per 32 images, so that the cpu row (a partial batch) compares too.
  const step = (seconds: number) => ((seconds * 1000 * BATCH) / images).toFixed(0);
  console.log(`${label.padEnd(LABEL)} ${r.wall.toFixed(1).padStart(7)} ${r.cpu.toFixed(1).padStart(7)}   ` +
    `${step(t.wall).padStart(7)} ${step(t.cpu).padStart(7)}`);
  return r;
}

/**
 * A warm-up epoch (XNNPACK operator caches, optimizer slots, JIT), then a
 * timed one. `replacements`: which of our replaced kernels are used on wasm.
 */
async function measure(label: string, backend: 'wasm' | 'cpu', images: number,
  replacements: boolean | readonly string[] = true, warmupImages = images): Promise<Result> {
  await tf.setBackend(backend);
  setWasmKernelReplacements(replacements);
  const s = makeSession(images);
  try {
    await epoch(s, warmupImages);
    return report(label, images, await epoch(s));
  } finally {
    disposeSession(s);
    setWasmKernelReplacements(true);
  }
}

/**
 * A warm-up epoch and a timed one through the engine's training loop (what a
 * fine-tune runs), on `threads` threads: the engine's and threads - 1
 * data-parallel helpers, started before the clock (a fine-tune starts them
 * once per run).
 */
async function measureLoop(label: string, threads: number, images: number): Promise<Result> {
  await tf.setBackend('wasm');
  const s = makeSession(images);
  const { model } = s;
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  // The step a fine-tune runs: compiled (src/engine/train/step) when it can be.
  const step = trainingStep(model, variables, { batchSize: BATCH, optimizer: 'adam' });
  if (threads === 1) console.log(`  (${step.line})`);
  const net: Trainable = {
    forward: (x, training) => model.apply(x, { training }) as tf.Tensor,
    outputKind: 'logits',
    variables,
    state: model.weights,
    compiled: step.compiled,
  };
  const data: TrainData = {
    trainSize: images,
    batchesPerEpoch: Math.ceil(images / BATCH),
    train: async function* (): AsyncGenerator<Batch> {
      for (let i = 0; i < images; i += BATCH) {
        const size = Math.min(BATCH, images - i);
        yield { xs: tf.slice(s.xs, i, size), ys: tf.slice(s.ys, i, size), size };
      }
    },
  };
  const before = threadCpu();
  const runner =
    threads > 1
      ? await ParallelStepRunner.start({ threads, model, frozen: [], outputKind: 'logits', variables: model.trainableWeights, statistics: statisticsOf(model) })
      : undefined;
  // The engine's thread is the process's first; the helpers are the threads started with them.
  const training = [String(process.pid), ...[...threadCpu().keys()].filter((t) => !before.has(t))];
  const optimizer = tf.train.adam(1e-3);
  const options = { epochs: 1, optimizer, learningRate: 1e-3, monitor: 'loss' as const, seed: 1, runner };
  try {
    await trainLoop(net, data, options);
    const wall0 = performance.now();
    const cpu0 = cpuSeconds();
    const threads0 = threadCpu();
    await trainLoop(net, data, options);
    const r = report(label, images, { wall: (performance.now() - wall0) / 1000, cpu: cpuSeconds() - cpu0 });
    const threads1 = threadCpu();
    const used = training.map((t) => (threads1.get(t) ?? 0) - (threads0.get(t) ?? 0));
    if (threads > 1 && used.length >= threads) {
      r.busiest = images / Math.max(...used);
      console.log(`${''.padEnd(LABEL)}   CPU s by thread: ${used.map((u) => u.toFixed(2)).join(', ')}; busiest: ${r.busiest.toFixed(1)} img/s`);
    }
    return r;
  } finally {
    await runner?.dispose();
    step.compiled?.dispose();
    optimizer.dispose();
    disposeSession(s);
  }
}

/**
 * Where one training step on wasm spends its time, per kernel. Every wasm
 * kernel is wrapped for the duration with a CPU-time meter that subtracts the
 * time of kernels nested inside it (ours call Conv2D, Transpose, ... inside),
 * so the rows add up to the step and nothing is counted twice.
 */
async function profileStep(label: string, replacements: boolean | readonly string[]): Promise<void> {
  await tf.setBackend('wasm');
  setWasmKernelReplacements(replacements);
  const s = makeSession(BATCH);
  const exclusive = new Map<string, { seconds: number; calls: number }>();
  const nestedTime: number[] = [];
  const wrapped: tf.KernelConfig[] = [];
  for (const config of tf.getKernelsForBackend('wasm')) {
    const { kernelName, kernelFunc } = config;
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({
      ...config,
      kernelFunc: (args) => {
        const start = cpuSeconds();
        nestedTime.push(0);
        const out = kernelFunc(args);
        const elapsed = cpuSeconds() - start;
        const nested = nestedTime.pop() ?? 0;
        if (nestedTime.length > 0) nestedTime[nestedTime.length - 1] += elapsed;
        const row = exclusive.get(kernelName) ?? { seconds: 0, calls: 0 };
        row.seconds += elapsed - nested;
        row.calls += 1;
        exclusive.set(kernelName, row);
        return out;
      },
    });
    wrapped.push(config);
  }
  try {
    await epoch(s); // warm-up
    exclusive.clear();
    const steps = 3;
    let stepSeconds = 0;
    for (let i = 0; i < steps; ++i) stepSeconds += (await epoch(s)).cpu / steps;
    const rows = [...exclusive.entries()].sort((a, b) => b[1].seconds - a[1].seconds);
    const kernelSeconds = rows.reduce((sum, [, r]) => sum + r.seconds, 0) / steps;
    console.log(`\nProfile of one training step on wasm, ${label}: ${(stepSeconds * 1000).toFixed(0)} ms CPU per step, ` +
      `${(kernelSeconds * 1000).toFixed(0)} ms of it in kernels`);
    for (const [name, r] of rows.slice(0, 12)) {
      const ms = (r.seconds * 1000) / steps;
      console.log(`  ${name.padEnd(36)} ${ms.toFixed(1).padStart(7)} ms ${((100 * ms) / (stepSeconds * 1000)).toFixed(1).padStart(5)}%` +
        `  ${String(r.calls / steps).padStart(3)} calls`);
    }
  } finally {
    for (const config of wrapped) {
      tf.unregisterKernel(config.kernelName, 'wasm');
      tf.registerKernel(config);
    }
    disposeSession(s);
    setWasmKernelReplacements(true);
  }
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

function printRatios(what: string, ours: Result[], torch: TorchResult[]): void {
  for (const clock of ['wall', 'cpu'] as const) {
    const pairs = ours.map((o, i) => o[clock] / torch[i][clock]);
    console.log(`${what} / torch, ${clock === 'wall' ? 'wall clock' : 'CPU time'}: ` +
      `${(mean(ours.map((o) => o[clock])) / mean(torch.map((t) => t[clock]))).toFixed(2)}x ` +
      `(per pair: ${pairs.map((r) => r.toFixed(2)).join(', ')})`);
  }
}

function printTorch(label: string, t: TorchResult): void {
  console.log(`${label.padEnd(LABEL)} ${t.wall.toFixed(1).padStart(7)} ${t.cpu.toFixed(1).padStart(7)}`);
}

async function compareWithTorch(images: number): Promise<void> {
  const script = torchScript();
  if (!script) return;
  console.log(`\nwasm (ours) vs PyTorch ${torchVersion() ?? ''}, 1 thread each, alternating A B A B, ${images} images per run:`);
  const ours: Result[] = [];
  const torch: TorchResult[] = [];
  for (let round = 1; round <= 2; ++round) {
    ours.push(await measure(`  A  wasm, our kernels (run ${round})`, 'wasm', images));
    const t = runTorch(script, images);
    if (!t) return;
    torch.push(t);
    printTorch(`  B  torch, 1 thread (run ${round})`, t);
  }
  printRatios('wasm (ours)', ours, torch);
}

const BURN = `let x = 0; for (let i = 0; i < 2e8; i++) x = (x + i * 7) % 1000003; x`;

/**
 * The cores this process can have right now, from a fixed JS loop run on one
 * thread and then on `threads` at once (each its own copy): `threads` when
 * the machine is idle, fewer when other work holds cores. Printed next to
 * the thread counts, because a speed-up from threads cannot exceed it.
 */
async function coresAvailable(threads: number): Promise<number> {
  const once = () => {
    const t0 = performance.now();
    new Function(BURN)();
    return performance.now() - t0;
  };
  once(); // JIT
  const alone = once();
  const t0 = performance.now();
  const others = Array.from({ length: threads - 1 }, () => new Worker(`${BURN}; require('node:worker_threads').parentPort.postMessage(0)`, { eval: true }));
  const done = others.map((w) => new Promise((resolve) => w.once('message', resolve)));
  once();
  await Promise.all(done);
  const together = performance.now() - t0;
  await Promise.all(others.map((w) => w.terminate()));
  return (threads * alone) / together;
}

/**
 * The engine's loop at each thread count (--threads), with PyTorch at the
 * same count when asked: per count, A B A B. Then the ratios per count, and
 * the engine's own speed-up from its extra threads.
 */
async function compareThreads(counts: number[], images: number, withTorch: boolean): Promise<void> {
  const script = withTorch ? torchScript() : undefined;
  const version = script ? torchVersion() : undefined;
  console.log(`\nThe engine's training loop (a fine-tune's) at ${counts.join(', ')} thread${counts.length > 1 ? 's' : ''}` +
    `${script ? ` vs PyTorch ${version ?? ''} at the same count, alternating A B A B` : ''}, ${images} images per run:`);
  const most = Math.max(...counts);
  if (most > 1) console.log(`cores available to this process now: ${(await coresAvailable(most)).toFixed(2)} of ${most} (a JS loop on ${most} threads vs 1)`);
  const ours = new Map<number, Result[]>();
  const torch = new Map<number, TorchResult[]>();
  for (const threads of counts) {
    ours.set(threads, []);
    torch.set(threads, []);
    for (let round = 1; round <= 2; ++round) {
      ours.get(threads)!.push(await measureLoop(`  A  wasm, engine loop, ${threads} thread${threads > 1 ? 's' : ''} (run ${round})`, threads, images));
      if (!script) continue;
      const t = runTorch(script, images, threads);
      if (!t) return;
      torch.get(threads)!.push(t);
      printTorch(`  B  torch, ${threads} thread${threads > 1 ? 's' : ''} (run ${round})`, t);
    }
  }
  console.log(`load average now ${os.loadavg()[0].toFixed(1)}` +
    (most > 1 ? `; cores available now: ${(await coresAvailable(most)).toFixed(2)} of ${most}` : ''));
  for (const threads of counts) {
    if (script) printRatios(`wasm ${threads} thread${threads > 1 ? 's' : ''}`, ours.get(threads)!, torch.get(threads)!);
  }
  const base = counts.includes(1) ? ours.get(1)! : undefined;
  for (const threads of counts.filter((c) => c > 1)) {
    if (!base) break;
    const r = ours.get(threads)!;
    console.log(`wasm ${threads} threads vs 1, wall clock: ${(mean(r.map((x) => x.wall)) / mean(base.map((x) => x.wall))).toFixed(2)}x ` +
      `(images per CPU-second: ${(mean(r.map((x) => x.cpu)) / mean(base.map((x) => x.cpu))).toFixed(2)}x)`);
    const busiest = r.map((x) => x.busiest).filter((b): b is number => b !== undefined);
    if (busiest.length > 0) {
      console.log(`wasm ${threads} threads, each on a core of its own (images per second of the busiest thread's CPU): ${mean(busiest).toFixed(1)} img/s, ` +
        `${(mean(busiest) / mean(base.map((x) => x.cpu))).toFixed(2)}x one thread's images per CPU-second (an estimate; the wall clock above is the measurement)`);
    }
  }
}

async function main(): Promise<void> {
  const images = option('--images', 256);
  const cpuImages = option('--cpu-images', 8);
  const info = await initBackend({ prefer: 'wasm' });
  if (info.name !== 'wasm') throw new Error(`the wasm backend is unavailable: ${info.notes.join('; ')}`);
  const load = os.loadavg()[0];
  console.log(`Small CNN training, batch ${BATCH}; tfjs ${tf.version.tfjs}, Node ${process.version}; ` +
    `wasm simd=${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')} threads=${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')}`);
  console.log(`load average ${load.toFixed(1)} on ${os.cpus().length} cores` +
    (load > os.cpus().length - 1 ? ': the machine is busy, trust the CPU-time columns over wall time' : ''));
  console.log(`\n${''.padEnd(LABEL)} ${'images/s'.padStart(15)}   ${`ms/${BATCH} images`.padStart(15)}`);
  console.log(`${''.padEnd(LABEL)} ${'wall'.padStart(7)} ${'cpu'.padStart(7)}   ${'wall'.padStart(7)} ${'cpu'.padStart(7)}`);

  const others = REPLACED_KERNELS.filter((k) => !TRAINING_REPLACEMENTS.includes(k));
  console.log(`(replaced on wasm: ${REPLACED_KERNELS.join(', ')})`);
  const ours = await measure('wasm, our kernels', 'wasm', images);
  const partial = await measure(`wasm, tfjs's ${TRAINING_REPLACEMENTS.join('/')}`, 'wasm', images, others);
  const none = await measure("wasm, tfjs's kernels for all replaced", 'wasm', images, false);
  let cpu: Result | undefined;
  if (!flag('--no-cpu')) {
    cpu = await measure(`cpu (${cpuImages} images)`, 'cpu', cpuImages, true, Math.max(1, Math.round(cpuImages / 4)));
  }

  const ratio = (a: Result, b: Result) => `${(a.wall / b.wall).toFixed(2)}x wall, ${(a.cpu / b.cpu).toFixed(2)}x cpu`;
  console.log(`\nour ${TRAINING_REPLACEMENTS.join('/')} vs tfjs's on wasm: ${ratio(ours, partial)}`);
  console.log(`all our replacements (${REPLACED_KERNELS.join(', ')}) vs none: ${ratio(ours, none)}`);
  if (cpu) console.log(`wasm (ours) vs the cpu backend: ${ratio(ours, cpu)}`);

  if (flag('--profile')) {
    await profileStep('our kernels', true);
    await profileStep("tfjs's kernels for all replaced", false);
  }
  const threads = listOption('--threads');
  if (threads) await compareThreads(threads, images, flag('--torch'));
  else if (flag('--torch')) await compareWithTorch(images);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
