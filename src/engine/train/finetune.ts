/**
 * A fine-tune run from start to end: load the model, read the dataset, keep
 * or replace the head, apply the freeze plan, train, and save the result as a
 * new folder next to the model. The single entry point for the worker and the
 * CLI: progress goes to a callback, cancellation comes from an AbortSignal.
 *
 * Nothing is written until training has finished: the folder is built under
 * a temporary name and renamed at the end (src/engine/io/atomic.ts), so a
 * cancel, an error or a kill leaves no partial result, and the source model's
 * folder is only ever read.
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'node:os';
import { CancelledError, EngineError, messageOf } from '../errors';
import { inputGeometry, withChannelAxis } from '../inputGeometry';
import { layerRows, walkLayers } from '../model';
import { freezeUpTo } from '../../protocol/freezePlan';
import { finetuneSchema, type FinetuneSettings } from '../../protocol/recipe';
import type { Normalization } from '../../protocol/model';
import {
  augmentSummary,
  metricsCsv,
  type FinetuneResult,
  type FinetuneSettingsInput,
  type MonitorName,
  type SkippedFile,
  type TrainProgress,
} from '../../protocol/train';
import { augmentationEnabled, augmentBatch, augmentRng, pixelMapOf } from './augment';
import { epochOrder, ImageSource, InputCache, scanDataset, splitDataset, type DatasetImage, type ImageBatch } from './dataset';
import { MemoryEmbeddingCache, embeddingBatches } from './memoryEmbeddingCache';
import { openDiskEmbeddings } from '../embed/diskEmbeddingCache';
import { applyFreezePlan } from './freeze';
import { planHead, type HeadPlan } from './head';
import { matchClasses } from './classNames';
import { backendName, classCounts, loopOutcome, checkCancel as checkCancelOf, disposeJob, endProgress, jobMetadata, openLayersModel, outputFolder, relativeTo, saveModelFolder, siblingOutputPath, trainingNormalization, trainWithProgress, validationEvaluation, type JobNames } from './job';
import type { Batch, Trainable, TrainData } from './loop';
import { ParallelStepRunner } from './parallel';
import { trainingStep, type CompiledStep } from './step';
import { regularizationOf, statisticsOf } from './replica';

/** What a probe sees at the end of an epoch: the model being trained, and how its inputs are made. */
export interface EpochProbeContext {
  model: tf.LayersModel;
  /** 0 before the first epoch, else the epoch just finished (1-based). */
  epoch: number;
  epochs: number;
  height: number;
  width: number;
  channels: number;
  /** 3 for a model without a channel axis. */
  rank: 3 | 4;
  normalization: Normalization;
}

/**
 * Runs before the first epoch and after each one, outside the gradient tape
 * (live feature maps: src/engine/compare/probe.ts); what it returns is sent to
 * onProgress. It must not throw: a probe reports its own failure as a warning.
 */
export interface EpochProbe {
  onEpochEnd(ctx: EpochProbeContext): Promise<TrainProgress | undefined>;
}

export interface FinetuneOptions {
  modelJsonPath: string;
  /** One sub-folder of PNG/JPEG images per class. */
  datasetDir: string;
  /** As in layerlens.json's "finetune"; missing fields take the recipe defaults. */
  settings: FinetuneSettingsInput | FinetuneSettings;
  /** Layer paths to hold fixed (layerlens.json's "freeze"). */
  frozen: readonly string[];
  /**
   * What to train. 'plan' (default): `frozen` as given, except that a
   * Teachable Machine export given no plan trains a new head on its frozen
   * backbone, as Teachable Machine does; 'none': every layer, whatever
   * `frozen` says; 'backbone': everything up to the head is frozen.
   */
  freeze?: 'plan' | 'none' | 'backbone';
  /** Where to save; must not exist. Default: `<name>-finetuned-<YYYYMMDD-HHMM>` next to the model. */
  outDir?: string;
  signal?: AbortSignal;
  onProgress: (p: TrainProgress) => void;
  /**
   * Cache a frozen backbone's outputs after epoch 1 when nothing else changes
   * them (no augmentation). Default true; the benchmark turns it off to
   * measure the difference.
   */
  embeddingCache?: boolean;
  /** Memory for decoded inputs kept between epochs (default 256 MB). */
  inputCacheBytes?: number;
  /** Least time between two batch progress messages (default 250 ms). */
  batchProgressMs?: number;
  /** The clock for the folder name (tests). */
  now?: () => Date;
  /** Called at epoch ends (and once before training); see EpochProbe. Owned by the caller. */
  probe?: EpochProbe;
  /** The training step's memory budget in MB (layerLens.memoryLimitMB; default: wasm's 4 GB). */
  memoryLimitMB?: number;
}

export function parseSettings(input: FinetuneOptions['settings']): FinetuneSettings {
  const r = finetuneSchema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.join('.') || '(settings)'}: ${i.message}`).join('; ');
  throw new EngineError('bad-recipe', `the fine-tune settings are not valid (${issues}); fix them in layerlens.json.`);
}

/** `<name>-finetuned-YYYYMMDD-HHMM` next to the model folder (a second run in the same minute gets "-2"). */
export function defaultOutputPath(modelJsonPath: string, name: string, now: Date): string {
  return siblingOutputPath(modelJsonPath, `${name}-finetuned`, now);
}

const names: JobNames = { doing: 'Fine-tuning', made: 'fine-tuned' };
const checkCancel = (signal: AbortSignal | undefined) => checkCancelOf(signal, names);

export function monitorFor(settings: FinetuneSettings, hasVal: boolean, warnings: string[]): MonitorName {
  const wanted = settings.earlyStopping?.monitor ?? (hasVal ? 'val_loss' : 'loss');
  if (wanted.startsWith('val_') && !hasVal) {
    const fallback = wanted.slice(4) as MonitorName;
    warnings.push(`There is no validation set (validationFraction is 0 or the classes are too small), so early stopping watches ${fallback} instead of ${wanted}.`);
    return fallback;
  }
  return wanted;
}

async function* augmented(batches: AsyncIterable<ImageBatch>, settings: FinetuneSettings, seed: number, epoch: number, normalization: Normalization, channels: number): AsyncGenerator<Batch> {
  const rng = augmentRng(seed, epoch);
  const map = pixelMapOf(normalization, channels);
  for await (const b of batches) {
    let xs: tf.Tensor;
    try {
      xs = withChannelAxis(b.xs, (x4) => augmentBatch(x4, settings.augment, rng, map));
    } catch (e) {
      b.ys.dispose();
      throw e;
    } finally {
      b.xs.dispose();
    }
    yield { xs, ys: b.ys, size: b.size };
  }
}

async function* plain(batches: AsyncIterable<ImageBatch>): AsyncGenerator<Batch> {
  for await (const b of batches) yield { xs: b.xs, ys: b.ys, size: b.size, indices: b.indices };
}

/** Re-labels images to the output order of a kept head (the model's label order). */
function relabel(images: DatasetImage[], classes: string[], labels: string[]): DatasetImage[] {
  const { map } = matchClasses(classes, labels);
  return images.map((im) => ({ ...im, label: map[im.label] }));
}

function paramCount(ws: tf.LayerVariable[]): number {
  return ws.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/** Fine-tunes a model on an image folder and saves the result as a new model folder. */
export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const started = performance.now();
  let settings = parseSettings(o.settings);
  const { signal, onProgress } = o;
  checkCancel(signal);
  const { loaded, source, modelName } = await openLayersModel(
    o.modelJsonPath,
    (name) => `${name} is a graph model (inference only); fine-tuning needs a layers model (tfjs.converters.save_keras_model, or tensorflowjs_converter --output_format tfjs_layers_model).`,
  );
  let plan: HeadPlan | undefined;
  let optimizer: tf.Optimizer | undefined;
  let runner: ParallelStepRunner | undefined;
  let compiled: CompiledStep | undefined;
  const embeddings = { cache: undefined as MemoryEmbeddingCache | undefined };
  const inputCache = new InputCache(o.inputCacheBytes ?? 256 * 1024 * 1024);
  try {
    const warnings: string[] = [];
    const geometry = inputGeometry(modelName, source.inputs[0].shape, { purpose: 'finetune', imageSize: settings.imageSize });
    const { normalization, from: normalizationFrom } = trainingNormalization(settings.normalization, loaded, () =>
      warnings.push(`${modelName} does not say how its inputs are scaled; training with pixels in [0, 1]. If it expects [-1, 1] or ImageNet mean/std, set "normalization" under "finetune" in layerlens.json.`),
    );
    const output = await outputFolder({ loaded, outDir: o.outDir, suffix: 'finetuned', now: o.now, names });

    const scan = await scanDataset(o.datasetDir, { signal });
    checkCancel(signal);
    warnings.push(...scan.warnings);

    plan = planHead(source, { classes: scan.classes, modelLabels: loaded.summary.labels, cutLayer: settings.cutLayer, seed: settings.seed, modelName });
    warnings.push(...plan.warnings);
    const model = plan.model;
    const mode = o.freeze ?? 'plan';
    const teachableDefault = mode === 'plan' && o.frozen.length === 0 && loaded.summary.origin === 'teachable-machine';
    const wanted = mode === 'none' ? [] : mode === 'backbone' || teachableDefault ? freezeUpTo(layerRows(model), plan.cutLayer) : o.frozen;
    if (teachableDefault) {
      // As Teachable Machine: no augmentation, so that the backbone's outputs are computed once.
      const augmented = augmentationEnabled(settings.augment);
      if (augmented) settings = { ...settings, augment: Object.fromEntries(Object.entries(settings.augment).map(([k, v]) => [k, { ...v, enabled: false }])) as FinetuneSettings['augment'] };
      warnings.push(`${modelName} is a Teachable Machine export and its recipe freezes no layer: training ${plan.replaced ? 'a new head' : 'its head'} on its frozen backbone, as Teachable Machine does${augmented ? ', without augmentation' : ''} (fast: the backbone's outputs are computed once). To train every layer, choose "Every layer" in Fine-Tune or run layer-lens finetune --freeze none; --freeze backbone keeps the backbone frozen with the recipe's augmentation.`);
    }
    const freeze = applyFreezePlan(model, wanted);
    if (freeze.unknown.length > 0) {
      const oldPaths = new Set([...walkLayers(source)].map((l) => l.path));
      const inOldHead = freeze.unknown.filter((p) => oldPaths.has(p));
      const missing = freeze.unknown.filter((p) => !oldPaths.has(p));
      if (inOldHead.length > 0) warnings.push(`Frozen layer${inOldHead.length > 1 ? 's' : ''} ${inOldHead.join(', ')} belonged to the replaced head; the new head trains.`);
      if (missing.length > 0) warnings.push(`The freeze plan names ${missing.join(', ')}, which ${modelName} does not have; ignored.`);
    }
    const frozenList = wanted.filter((p) => !freeze.unknown.includes(p));

    const split = splitDataset(scan, settings.validationFraction, settings.seed);
    const labels = plan.labels;
    const trainImages = relabel(split.train, scan.classes, labels);
    const valImages = relabel(split.val, scan.classes, labels);
    const hasVal = valImages.length > 0;
    const monitor = monitorFor(settings, hasVal, warnings);

    const onBadImage = (s: SkippedFile) =>
      onProgress({ type: 'warning', message: `Skipped ${s.reason === 'unreadable' ? 'unreadable file' : 'corrupt image'} ${s.file}: it ${s.detail}; training goes on without it.` });
    const sourceOptions = { ...geometry, normalization, classCount: labels.length, cache: inputCache, onBadImage };
    const trainSrc = new ImageSource(trainImages, sourceOptions);
    const valSrc = new ImageSource(valImages, sourceOptions);

    // A wholly frozen backbone runs in inference mode, as Keras's transfer
    // learning recipe calls it (base_model(x, training=False)): its outputs
    // then depend on the image alone, which is what makes them cacheable.
    const backbone = plan.backbone;
    const headLayers = plan.headLayers;
    const backboneFrozen = backbone !== undefined && headLayers !== undefined && backbone.isFrozen();
    const augmentOn = augmentationEnabled(settings.augment);
    const featureShape = backbone?.featureShape;
    const cacheable = backboneFrozen && !augmentOn && featureShape !== undefined && featureShape.every((d) => d !== null);
    const useCache = cacheable && (o.embeddingCache ?? true);
    const embed = (xs: tf.Tensor): tf.Tensor => {
      if (!backbone) throw new EngineError('internal', 'no backbone to compute embeddings with.');
      return backbone.apply(xs, false);
    };

    const headWeights = headLayers?.flatMap((l) => l.weights) ?? [];
    let forward: Trainable['forward'];
    if (backboneFrozen && plan.headOps) forward = plan.headOps;
    else if (backboneFrozen && headLayers) forward = (x, training) => headLayers.reduce((t, l) => l.apply(t, { training }) as tf.Tensor, x);
    else forward = (x, training) => model.apply(x, { training }) as tf.Tensor;
    const trainable: Trainable = {
      frozen: backboneFrozen && !useCache ? embed : undefined,
      forward,
      outputKind: plan.outputKind,
      regularization: regularizationOf(model),
      variables: model.trainableWeights.map((w) => w.read() as tf.Variable),
      // A frozen backbone cannot change, so only the head needs a copy at the best epoch.
      state: backboneFrozen ? headWeights : model.weights,
    };

    const bs = settings.batchSize;
    const k = labels.length;
    // Training the whole forward: the compiled step when it can (src/engine/train/step).
    let stepLine: string | undefined;
    if (!backboneFrozen) {
      // No batch is larger than the training set.
      const step = trainingStep(model, trainable.variables, { batchSize: Math.min(bs, trainSrc.length), optimizer: settings.optimizer, memoryLimitMB: o.memoryLimitMB });
      compiled = trainable.compiled = step.compiled;
      trainable.microBatch = step.microBatch;
      stepLine = step.line;
    }
    if (useCache) embeddings.cache = new MemoryEmbeddingCache(featureShape as number[]);
    // One cache with Compute Embeddings: unchanged images' backbone outputs come from disk (embed/diskEmbeddingCache.ts).
    const disk = embeddings.cache
      ? await openDiskEmbeddings({ files: loaded.files, datasetDir: scan.dir, classes: scan.classes, images: scan.images, layer: plan.cutLayer, normalization, imageSize: [geometry.height, geometry.width], featureShape: featureShape as number[], cache: embeddings.cache })
      : undefined;
    const valOrder = Array.from({ length: valSrc.length }, (_, i) => i);
    const data: TrainData = {
      trainSize: trainSrc.length,
      batchesPerEpoch: Math.ceil(trainSrc.length / bs),
      train: (epoch) => {
        const order = epochOrder(trainSrc.length, settings.seed, epoch);
        if (embeddings.cache) return embeddingBatches(trainSrc, order, bs, embeddings.cache, embed, k);
        const images = trainSrc.batches(order, bs, signal);
        return augmentOn ? augmented(images, settings, settings.seed, epoch, normalization, geometry.channels) : plain(images);
      },
      validation: hasVal
        ? () =>
            embeddings.cache
              ? // Once cached, validation rows are small: big batches, few steps (the means are the same).
                embeddingBatches(valSrc, valOrder, bs, embeddings.cache, embed, k, 1024)
              : plain(valSrc.batches(valOrder, bs, signal))
        : undefined,
    };

    // Data-parallel threads share the backbone's work; with cached backbone
    // outputs a step is a small head's, cheaper than sending it to a thread.
    let threads = useCache ? 1 : settings.threads;
    if (settings.threads > 1 && useCache) {
      warnings.push(`threads ${settings.threads}: the frozen backbone's outputs are cached, so the head trains on one thread (a step is too small to share).`);
    }
    // More threads than cores only wait for each other (8 on 2 cores took 17x longer than 1).
    const cores = os.availableParallelism();
    if (threads > cores) {
      warnings.push(`threads ${threads}: this machine has ${cores} core${cores === 1 ? '' : 's'}, so training uses ${cores} thread${cores === 1 ? '' : 's'}.`);
      threads = cores;
    }
    if (threads > 1) {
      try {
        runner = await ParallelStepRunner.start({
          threads,
          model,
          frozen: frozenList,
          cutLayer: backboneFrozen ? plan.cutLayer : undefined,
          outputKind: plan.outputKind,
          variables: model.trainableWeights,
          statistics: statisticsOf(model),
          signal,
        });
      } catch (e) {
        if (e instanceof CancelledError || signal?.aborted) throw e;
        // The run still works on one thread: say why it is not on several.
        warnings.push(`threads ${threads}: ${messageOf(e)}; training on one thread.`);
        threads = 1;
      }
      checkCancel(signal);
    }

    const classes = classCounts(scan, split);
    onProgress({
      type: 'start',
      modelPath: loaded.files.modelJsonPath,
      datasetDir: scan.dir,
      classes,
      trainSize: trainSrc.length,
      valSize: valSrc.length,
      validationFraction: settings.validationFraction,
      seed: settings.seed,
      epochs: settings.epochs,
      batchSize: bs,
      batchesPerEpoch: data.batchesPerEpoch,
      optimizer: settings.optimizer,
      learningRate: settings.learningRate,
      imageSize: [geometry.height, geometry.width],
      normalization,
      ...(normalizationFrom ? { normalizationFrom } : {}),
      skipped: scan.skipped,
      frozen: { paths: frozenList, params: freeze.frozenParams },
      trainableParams: paramCount(model.trainableWeights),
      totalParams: model.countParams(),
      head: { replaced: plan.replaced, cutLayer: plan.cutLayer, units: k, reason: plan.reason },
      augment: augmentSummary(settings.augment),
      embeddingCache: useCache,
      threads,
      ...(stepLine ? { step: stepLine } : {}),
      warnings,
    });

    const probeAt = async (epoch: number) => {
      if (!o.probe) return;
      const p = await o.probe.onEpochEnd({ model, epoch, epochs: settings.epochs, ...geometry, normalization });
      if (p) onProgress(p);
    };
    await probeAt(0);

    const { loop, metrics } = await trainWithProgress(
      trainable,
      data,
      {
        epochs: settings.epochs,
        optimizerName: settings.optimizer,
        learningRate: settings.learningRate,
        lrSchedule: settings.lrSchedule,
        earlyStopping: settings.earlyStopping,
        monitor,
        seed: settings.seed,
        signal,
        runner,
        // The best epoch's weights are saved unless the recipe says "keep": "last".
        keepBest: settings.keep === 'best',
        batchesPerEpoch: data.batchesPerEpoch,
        throttleMs: o.batchProgressMs ?? 250,
        onProgress,
        afterEpoch: (epoch) => probeAt(epoch + 1),
      },
      (opt) => (optimizer = opt),
    );

    const skipped = [...scan.skipped, ...trainSrc.badImages, ...valSrc.badImages];
    const evaluation = validationEvaluation(loop, labels, (i) => valImages[i].file);
    const head = { replaced: plan.replaced, cutLayer: plan.cutLayer, reason: plan.reason };
    // Paths in the files are relative to the folder the model is finally saved in (named at save time).
    const metadata = (outputPath: string) => ({
      ...jobMetadata({ outputPath, loaded, labels, normalization, imageSize: [geometry.height, geometry.width] }),
      dataset: relativeTo(outputPath, scan.dir),
      backend: backendName(),
      head,
      frozen: frozenList,
      settings,
      training: {
        ...loopOutcome(loop),
        trainImages: trainSrc.length,
        valImages: valSrc.length,
        skippedFiles: skipped.length,
        embeddingCache: useCache,
      },
      // The seeded split's validation images (Compare measures drift on them; layer-lens evaluate repeats the split).
      validationImages: valImages.map((im) => relativeTo(outputPath, im.file)),
    });
    const metricsJson = (outputPath: string) => ({
      monitor: loop.monitor, bestEpoch: loop.bestEpoch, bestValue: loop.bestValue, lastValue: loop.lastValue, restored: loop.restored, stoppedEarly: loop.stoppedEarly, epochs: metrics,
      ...(evaluation ? { evaluation: { ...evaluation, images: evaluation.images.map((im) => ({ ...im, path: relativeTo(outputPath, im.path) })) } } : {}),
    });
    const outputPath = await saveModelFolder(
      output,
      model,
      (folder) => ({
        'metadata.json': JSON.stringify(metadata(folder), null, 2) + '\n',
        'metrics.json': JSON.stringify(metricsJson(folder), null, 2) + '\n',
        'metrics.csv': metricsCsv(metrics),
      }),
      signal,
      names,
      (message) => onProgress({ type: 'warning', message }),
    );
    const cacheWarning = await disk?.save();
    if (cacheWarning) onProgress({ type: 'warning', message: cacheWarning });

    const end = endProgress(loop, outputPath, started, evaluation);
    onProgress(end);
    const seconds = end.seconds;
    return {
      outputPath,
      labels,
      metrics,
      ...loopOutcome(loop),
      trainSize: trainSrc.length,
      valSize: valSrc.length,
      skipped,
      embeddingCache: useCache,
      seconds,
      ...(evaluation ? { evaluation } : {}),
    };
  } finally {
    await runner?.dispose();
    compiled?.dispose();
    embeddings.cache?.clear();
    inputCache.clear();
    disposeJob({ loaded, trained: plan?.model, created: plan?.created, optimizer });
  }
}
