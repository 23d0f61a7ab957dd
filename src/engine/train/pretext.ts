/**
 * Self-supervised pretraining with the rotation pretext task (Gidaris et al.,
 * "Unsupervised representation learning by predicting image rotations",
 * 2018): every unlabelled image is shown turned by 0, 90, 180 and 270
 * degrees, and the network learns to tell which. To do that it must find what
 * is "up" in an image (the shapes and parts of objects), which is the kind of
 * feature a later classifier can reuse with few labels.
 *
 * The network is the chosen model's backbone (up to its last feature layer,
 * head.ts findFeatureCut) with a new 4-way head; it trains with the same loop
 * as a fine-tune (loop.ts) and streams the same progress (TrainProgress). The
 * result is a new model folder `<name>-rotation-pretrained-<stamp>/` next to
 * the model (written atomically): the trained backbone with its rotation
 * head, labelled rot0..rot270, so that Fine-Tune replaces that head with one
 * for the real classes.
 *
 * Rotations are exact (tf.reverse and tf.transpose: pixels move, none is
 * interpolated), which needs a square input.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { inputGeometry, withChannelAxis } from '../inputGeometry';
import { rel } from '../io/files';
import { Rng } from '../random';
import { defaultPretextSettings, rotationLabels, type PretextResult, type PretextSettings } from '../../protocol/pretext';
import type { SkippedFile, TrainProgress } from '../../protocol/train';
import { listImagesRecursive } from '../embed/images';
import { deriveSeed, ImageSource, InputCache, oneHot, type DatasetImage } from './dataset';
import { applyFreezePlan } from './freeze';
import { findFeatureCut, planHead, type HeadPlan } from './head';
import { trainingStep, type CompiledStep } from './step';
import { backendName, checkCancel, disposeJob, endProgress, jobMetadata, openLayersModel, outputFolder, relativeTo, saveModelFolder, trainingNormalization, trainWithProgress, type JobNames } from './job';
import type { Batch, Trainable } from './loop';

/**
 * `xs` ([n, h, w, c], h = w) turned counter-clockwise by k * 90 degrees:
 * k = 1 moves the top-right pixel to the top-left, as numpy's rot90 does.
 */
export function rotate90(xs: tf.Tensor4D, k: number): tf.Tensor4D {
  const turns = ((k % 4) + 4) % 4;
  return tf.tidy(() => {
    if (turns === 0) return xs.clone();
    if (turns === 2) return tf.reverse(xs, [1, 2]);
    if (turns === 1) return tf.reverse(tf.transpose(xs, [0, 2, 1, 3]), 1);
    return tf.transpose(tf.reverse(xs, 1), [0, 2, 1, 3]);
  });
}

/** The 4 rotations of every image in `xs`, grouped by rotation, with one-hot labels (label k = k * 90 degrees). */
export function rotationBatch(xs: tf.Tensor4D): { xs: tf.Tensor4D; ys: tf.Tensor2D; labels: number[] } {
  const n = xs.shape[0];
  const labels = [0, 1, 2, 3].flatMap((k) => new Array<number>(n).fill(k));
  const out = tf.tidy(() => tf.concat([0, 1, 2, 3].map((k) => rotate90(xs, k)), 0) as tf.Tensor4D);
  return { xs: out, ys: oneHot(labels, 4), labels };
}

export interface PretextOptions {
  modelJsonPath: string;
  /** A folder of unlabelled images, read recursively. */
  imagesDir: string;
  settings?: Partial<PretextSettings>;
  /** Where to save; must not exist. Default: `<name>-rotation-pretrained-<YYYYMMDD-HHMM>` next to the model. */
  outDir?: string;
  signal?: AbortSignal;
  onProgress: (p: TrainProgress) => void;
  batchProgressMs?: number;
  now?: () => Date;
  /** The training step's memory budget in MB (layerLens.memoryLimitMB; default: wasm's 4 GB). */
  memoryLimitMB?: number;
}


async function* rotated(source: ImageSource, order: number[], batchSize: number, signal?: AbortSignal): AsyncGenerator<Batch> {
  for await (const b of source.batches(order, batchSize, signal)) {
    b.ys.dispose();
    try {
      const r = withChannelAxis(b.xs, (x4) => tf.tidy(() => tf.concat([0, 1, 2, 3].map((k) => rotate90(x4, k)), 0) as tf.Tensor4D));
      const labels = [0, 1, 2, 3].flatMap((k) => new Array<number>(b.size).fill(k));
      yield { xs: r, ys: oneHot(labels, 4), size: labels.length };
    } finally {
      b.xs.dispose();
    }
  }
}

const names: JobNames = { doing: 'Pretraining', made: 'pretrained' };

export async function pretrainRotation(o: PretextOptions): Promise<PretextResult> {
  const started = performance.now();
  const settings: PretextSettings = { ...defaultPretextSettings, ...o.settings };
  const { signal, onProgress } = o;
  checkCancel(signal, names);
  const { loaded, source, modelName } = await openLayersModel(o.modelJsonPath, (name) => `${name} is a graph model (inference only); pretraining needs a layers model.`);
  let plan: HeadPlan | undefined;
  let optimizer: tf.Optimizer | undefined;
  let compiled: CompiledStep | undefined;
  const inputCache = new InputCache(256 * 1024 * 1024);
  try {
    const { height: h, width: w, channels, rank } = inputGeometry(modelName, source.inputs[0].shape, { purpose: 'pretext' });
    const warnings: string[] = [];
    const { normalization, from: normalizationFrom } = trainingNormalization(undefined, loaded, () => warnings.push(`${modelName} does not say how its inputs are scaled; pretraining with pixels in [0, 1].`));
    const output = await outputFolder({ loaded, outDir: o.outDir, suffix: 'rotation-pretrained', now: o.now, names });

    const { images: listed, skipped: walkSkips } = await listImagesRecursive(o.imagesDir, signal);
    if (listed.length < 4) throw new EngineError('bad-dataset', `${rel(path.resolve(o.imagesDir))} holds ${listed.length} image${listed.length === 1 ? '' : 's'}; the rotation task needs at least 4 (hundreds help).`);
    const all: DatasetImage[] = listed.map((im) => ({ file: im.file, rel: im.rel, label: 0, ...(im.outside ? { outside: true } : {}) }));
    const shuffled = new Rng(deriveSeed(settings.seed, 'pretext-split')).shuffle(all.map((_, i) => i));
    const nVal = all.length >= 20 ? Math.round(settings.validationFraction * all.length) : 0;
    const valIdx = shuffled.slice(0, nVal).sort((a, b) => a - b);
    const trainIdx = shuffled.slice(nVal).sort((a, b) => a - b);

    let cut: string;
    try {
      cut = findFeatureCut(source, modelName).layer.name;
    } catch {
      cut = source.layers[source.layers.length - 1].name;
      warnings.push(`${modelName} has no classification head; the whole model is the backbone and the rotation head follows ${cut}.`);
    }
    plan = planHead(source, { classes: rotationLabels, cutLayer: cut, seed: settings.seed, modelName });
    const model = plan.model;
    applyFreezePlan(model, []);

    const skippedNow: SkippedFile[] = [];
    const sourceOptions = { height: h, width: w, channels, rank, normalization, classCount: 1, cache: inputCache, onBadImage: (s: SkippedFile) => {
      skippedNow.push(s);
      onProgress({ type: 'warning', message: `Skipped ${s.file}: it ${s.detail}; pretraining goes on without it.` });
    } };
    const trainSrc = new ImageSource(trainIdx.map((i) => all[i]), sourceOptions);
    const valSrc = new ImageSource(valIdx.map((i) => all[i]), sourceOptions);
    const bs = settings.batchSize;
    const batchesPerEpoch = Math.ceil(trainSrc.length / bs);
    const monitor = nVal > 0 ? 'val_acc' : 'acc';
    // Each image comes in four turns: a step's batch has 4 x bs rows.
    const step = trainingStep(model, model.trainableWeights.map((v) => v.read() as tf.Variable), { batchSize: Math.min(bs, trainSrc.length) * 4, optimizer: 'adam', memoryLimitMB: o.memoryLimitMB });
    compiled = step.compiled;

    onProgress({
      type: 'start',
      job: 'pretext',
      modelPath: loaded.files.modelJsonPath,
      datasetDir: path.resolve(o.imagesDir),
      classes: rotationLabels.map((name) => ({ name, images: all.length, train: trainSrc.length, val: valSrc.length })),
      trainSize: trainSrc.length * 4,
      valSize: valSrc.length * 4,
      validationFraction: nVal > 0 ? settings.validationFraction : 0,
      seed: settings.seed,
      epochs: settings.epochs,
      batchSize: bs * 4,
      batchesPerEpoch,
      optimizer: 'adam',
      learningRate: settings.learningRate,
      imageSize: [h, w],
      normalization,
      ...(normalizationFrom ? { normalizationFrom } : {}),
      skipped: walkSkips,
      frozen: { paths: [], params: 0 },
      trainableParams: model.trainableWeights.reduce((n, v) => n + v.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0),
      totalParams: model.countParams(),
      head: { replaced: true, cutLayer: cut, units: 4, reason: 'rotation pretext task: predict the turn (0, 90, 180, 270 degrees) of unlabelled images' },
      augment: 'rotations 0/90/180/270 (the pretext labels)',
      embeddingCache: false,
      step: step.line,
      warnings,
    });

    const trainable: Trainable = {
      forward: (x, training) => model.apply(x, { training }) as tf.Tensor,
      outputKind: 'probabilities',
      variables: model.trainableWeights.map((v) => v.read() as tf.Variable),
      state: model.weights,
      compiled: step.compiled,
      ...(step.microBatch ? { microBatch: step.microBatch } : {}),
    };
    const valOrder = Array.from({ length: valSrc.length }, (_, i) => i);
    const { loop, metrics } = await trainWithProgress(
      trainable,
      {
        trainSize: trainSrc.length * 4,
        batchesPerEpoch,
        train: (epoch) => rotated(trainSrc, new Rng(deriveSeed(settings.seed, 'pretext-shuffle', epoch)).shuffle(Array.from({ length: trainSrc.length }, (_, i) => i)), bs, signal),
        validation: nVal > 0 ? () => rotated(valSrc, valOrder, bs, signal) : undefined,
      },
      {
        epochs: settings.epochs,
        optimizerName: 'adam',
        learningRate: settings.learningRate,
        monitor,
        seed: settings.seed,
        signal,
        batchesPerEpoch,
        throttleMs: o.batchProgressMs ?? 250,
        onProgress,
      },
      (opt) => (optimizer = opt),
    );
    const last = metrics[metrics.length - 1];
    const metadata = (outputPath: string) => ({
      ...jobMetadata({ outputPath, loaded, labels: rotationLabels, normalization, imageSize: [h, w] }),
      backend: backendName(),
      pretext: {
        task: 'rotation',
        cutLayer: cut,
        note: 'The layers up to cutLayer are the pretrained backbone; the head after it predicts rotations. Fine-Tune replaces it for your classes.',
        images: relativeTo(outputPath, path.resolve(o.imagesDir)),
        trainImages: trainSrc.length,
        valImages: valSrc.length,
        settings,
        epochsRun: loop.epochsRun,
        acc: last?.acc,
        val_acc: last?.val_acc,
        skippedFiles: skippedNow.length,
      },
    });
    const outputPath = await saveModelFolder(output, model, (folder) => ({ 'metadata.json': JSON.stringify(metadata(folder), null, 2) + '\n' }), signal, names, (message) =>
      onProgress({ type: 'warning', message }),
    );
    const end = endProgress(loop, outputPath, started);
    onProgress(end);
    const seconds = end.seconds;
    return {
      outputPath,
      cutLayer: cut,
      images: all.length,
      trainImages: trainSrc.length,
      valImages: valSrc.length,
      epochsRun: loop.epochsRun,
      acc: last?.acc ?? NaN,
      ...(last?.val_acc !== undefined ? { valAcc: last.val_acc } : {}),
      seconds,
    };
  } finally {
    compiled?.dispose();
    inputCache.clear();
    disposeJob({ loaded, trained: plan?.model, created: plan?.created, optimizer });
  }
}
