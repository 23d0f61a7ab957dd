/**
 * Transfer learning on an ONNX classifier: the whole ONNX graph up to the cut
 * (the classifier's input by default, or `cutLayer` in the recipe) is the
 * frozen backbone and runs in ONNX Runtime; its outputs are cached per image
 * (epoch 1 computes them, later epochs read them); a new head (one Dense with
 * softmax, after a global average pool when the cut is a feature map) trains
 * in the engine with the same loop, optimizer, validation split, early
 * stopping and schedule as a TF.js fine-tune.
 *
 * The result is one `.onnx` file: the backbone graph (pruned to the cut, its
 * weights inline) with the trained head appended as ONNX nodes
 * (GlobalAveragePool and Flatten when needed, Gemm, Softmax) and their
 * initializers, plus metadata.json, labels.txt and the metrics, written as a
 * new folder next to the source in one rename (src/engine/io/atomic.ts).
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { rel } from '../io/files';
import { loadModel, type LoadedModel } from '../model';
import { openDiskEmbeddings } from '../embed/diskEmbeddingCache';
import { metricsCsv, type FinetuneResult, type SkippedFile } from '../../protocol/train';
import type { FinetuneSettings } from '../../protocol/recipe';
import { augmentationEnabled } from '../train/augment';
import { epochOrder, ImageSource, InputCache, scanDataset, splitDataset } from '../train/dataset';
import { monitorFor, parseSettings, type FinetuneOptions } from '../train/finetune';
import { seedDense } from '../train/head';
import { backendName, classCounts, loopOutcome, checkCancel, endProgress, jobMetadata, outputFolder, relativeTo, saveResultFolder, trainingNormalization, trainWithProgress, validationEvaluation, type JobNames } from '../train/job';
import type { Trainable, TrainData } from '../train/loop';
import { MemoryEmbeddingCache, embeddingBatches } from '../train/memoryEmbeddingCache';
import { modelWithOutputs } from './graph';
import type { OnnxModel } from './model';
import { encodeModel, type OnnxModelProto } from './proto';
import { attrs, floatTensor, valueInfo } from './write';

const names: JobNames = { doing: 'Fine-tuning', made: 'fine-tuned' };

export interface OnnxHead {
  /** [features, classes] */
  kernel: Float32Array;
  bias: Float32Array;
  features: number;
  classes: number;
  /** The cut's value is a feature map [n, c, h, w], averaged over space before the Gemm. */
  pool: boolean;
}

/** A name not used by any value, node or initializer of the graph. */
function freshName(taken: Set<string>, base: string): string {
  let name = base;
  for (let k = 2; taken.has(name); k++) name = `${base}_${k}`;
  taken.add(name);
  return name;
}

/**
 * The backbone graph pruned to `cut`, with `head` appended: [GlobalAveragePool,
 * Flatten,] Gemm (B = kernel, transB 0) and Softmax over axis 1; the single
 * output is the class probabilities [batch, classes]. `labels` also go into
 * metadata_props.
 */
export function appendHead(model: OnnxModelProto, cut: string, head: OnnxHead, labels: string[], batchDim: number | string): OnnxModelProto {
  const base = modelWithOutputs(model, [cut]);
  const g = base.graph!;
  const taken = new Set<string>();
  for (const n of g.node ?? []) {
    if (n.name) taken.add(n.name);
    for (const v of [...(n.input ?? []), ...(n.output ?? [])]) taken.add(v);
  }
  for (const t of g.initializer ?? []) if (t.name) taken.add(t.name);
  for (const v of g.input ?? []) if (v.name) taken.add(v.name);
  const nodes = [...(g.node ?? [])];
  let x = cut;
  if (head.pool) {
    const pooled = freshName(taken, 'layerlens_head/pool');
    nodes.push({ name: pooled, opType: 'GlobalAveragePool', input: [x], output: [pooled] });
    const flat = freshName(taken, 'layerlens_head/flatten');
    nodes.push({ name: flat, opType: 'Flatten', input: [pooled], output: [flat], attribute: [attrs.int('axis', 1)] });
    x = flat;
  }
  const w = freshName(taken, 'layerlens_head/kernel');
  const b = freshName(taken, 'layerlens_head/bias');
  const logits = freshName(taken, 'layerlens_head/logits');
  const probs = freshName(taken, 'probabilities');
  nodes.push({ name: logits, opType: 'Gemm', input: [x, w, b], output: [logits], attribute: [attrs.float('alpha', 1), attrs.float('beta', 1), attrs.int('transA', 0), attrs.int('transB', 0)] });
  nodes.push({ name: probs, opType: 'Softmax', input: [logits], output: [probs], attribute: [attrs.int('axis', 1)] });
  const opset = base.opsetImport ?? [];
  const main = opset.find((o) => !o.domain || o.domain === 'ai.onnx');
  // Softmax's axis means "this axis alone" from opset 13; for a [batch, classes] input both meanings agree.
  return {
    ...base,
    opsetImport: main ? opset : [...opset, { domain: '', version: 13 }],
    producerName: 'Layer Lens',
    producerVersion: '',
    graph: {
      ...g,
      node: nodes,
      initializer: [...(g.initializer ?? []), floatTensor(w, head.kernel, [head.features, head.classes]), floatTensor(b, head.bias, [head.classes])],
      output: [valueInfo(probs, [batchDim, head.classes])],
    },
    metadataProps: [
      ...(base.metadataProps ?? []).filter((e) => e.key !== 'labels'),
      { key: 'labels', value: JSON.stringify(labels) },
    ],
  };
}

export function isOnnxPath(p: string): boolean {
  return /\.onnx$/i.test(p);
}

/** Fine-tunes a new head on the frozen backbone of the ONNX model at `o.modelJsonPath`; see the file comment. */
export async function finetuneOnnx(o: FinetuneOptions): Promise<FinetuneResult> {
  checkCancel(o.signal, names);
  const loaded = await loadModel(o.modelJsonPath);
  try {
    if (!loaded.onnx) throw new EngineError('bad-input', `${rel(loaded.files.modelJsonPath)} is not an ONNX model.`);
    return await trainHead(o, loaded, loaded.onnx);
  } finally {
    await loaded.onnx?.release();
  }
}

async function trainHead(o: FinetuneOptions, loaded: LoadedModel, model: OnnxModel): Promise<FinetuneResult> {
  const started = performance.now();
  const settings: FinetuneSettings = parseSettings(o.settings);
  const { signal, onProgress } = o;
  const modelName = rel(loaded.files.modelJsonPath);
  const recipeName = `${path.basename(loaded.files.modelJsonPath).replace(/\.onnx$/i, '')}.layerlens.json`;
  const warnings: string[] = [];
  if (o.freeze === 'none') throw new EngineError('bad-input', `${modelName} is an ONNX model: its backbone runs in ONNX Runtime, which cannot train, so only a new head can be trained (--freeze backbone, the default for ONNX).`);
  if (o.frozen.length > 0) warnings.push(`${modelName} is an ONNX model: its whole backbone is frozen whatever the freeze plan says; a new head is trained.`);
  const g = model.geometry();
  const [sh, sw] = settings.imageSize ?? [g.height, g.width];
  if (sh == null || sw == null) throw new EngineError('bad-recipe', `${modelName} accepts images of any size, so the training size must be chosen: set "imageSize": [height, width] under "finetune" in ${recipeName}.`);
  if ((g.height != null && g.height !== sh) || (g.width != null && g.width !== sw)) {
    throw new EngineError('bad-recipe', `imageSize ${sh}x${sw} in ${recipeName} does not fit ${modelName}, whose input is ${g.height}x${g.width}; remove imageSize or set it to [${g.height}, ${g.width}].`);
  }
  const geometry = { height: sh, width: sw, channels: g.channels };
  const { normalization, from: normalizationFrom } = trainingNormalization(settings.normalization, loaded, () =>
    warnings.push(`${modelName} does not say how its inputs are scaled; training with pixels in [0, 1]. PyTorch's ImageNet models expect ImageNet mean/std: set "normalization": "imagenet" under "finetune" in ${recipeName} next to it, or in a metadata.json.`),
  );
  if (augmentationEnabled(settings.augment)) {
    warnings.push(`${modelName} is an ONNX model: its frozen backbone's outputs are computed once per image and cached, so augmentation is off for this run.`);
  }
  const output = await outputFolder({ loaded, outDir: o.outDir, suffix: 'finetuned', now: o.now, names });

  const cut = settings.cutLayer !== undefined ? model.valueOf(settings.cutLayer) : model.featureValue();
  const cutPath = settings.cutLayer ?? model.pathOfValue(cut) ?? cut;
  let dims = model.shapes.get(cut);
  if (!dims) dims = (await model.values({ data: new Float32Array(sh * sw * g.channels), dims: [1, sh, sw, g.channels] }, [cut]))[0].dims;
  const pool = dims.length === 4;
  const features = pool ? dims[1] : dims.slice(1).reduce((a, b) => a * b, 1);

  const scan = await scanDataset(o.datasetDir, { signal });
  checkCancel(signal, names);
  const labels = [...scan.classes];
  const k = labels.length;
  const split = splitDataset(scan, settings.validationFraction, settings.seed);
  const hasVal = split.val.length > 0;
  const monitor = monitorFor(settings, hasVal, warnings);
  const inputCache = new InputCache(o.inputCacheBytes ?? 256 * 1024 * 1024);
  const onBadImage = (s: SkippedFile) =>
    onProgress({ type: 'warning', message: `Skipped ${s.reason === 'unreadable' ? 'unreadable file' : 'corrupt image'} ${s.file}: it ${s.detail}; training goes on without it.` });
  const sourceOptions = { ...geometry, normalization, classCount: k, cache: inputCache, onBadImage };
  const trainSrc = new ImageSource(split.train, sourceOptions);
  const valSrc = new ImageSource(split.val, sourceOptions);

  // The backbone: ONNX Runtime on the batch, features pooled to [n, features].
  const embed = async (xs: tf.Tensor): Promise<tf.Tensor> => {
    const data = (await xs.data()) as Float32Array;
    const [v] = await model.values({ data, dims: xs.shape }, [cut]);
    const n = xs.shape[0];
    if (!pool) return tf.tensor2d(v.data, [n, features]);
    const [, c, h, w] = v.dims;
    const out = new Float32Array(n * c);
    for (let i = 0; i < n * c; i++) {
      let s = 0;
      for (let p = 0; p < h * w; p++) s += v.data[i * h * w + p];
      out[i] = s / (h * w);
    }
    return tf.tensor2d(out, [n, c]);
  };
  const cache = new MemoryEmbeddingCache([features]);
  // The benchmark turns the cache off to measure it: the backbone then runs every epoch.
  const cached = o.embeddingCache ?? true;
  // One cache with Compute Embeddings: unchanged images' backbone outputs come from disk.
  const disk = !cached ? undefined : await openDiskEmbeddings({
    files: loaded.files,
    datasetDir: scan.dir,
    classes: scan.classes,
    images: scan.images,
    layer: pool ? `${cutPath}#mean` : cutPath,
    normalization,
    imageSize: [sh, sw],
    featureShape: [features],
    cache,
  });

  const dense = tf.layers.dense({ units: k, activation: 'softmax', inputShape: [features], name: 'layerlens_head' });
  const headModel = tf.sequential({ layers: [dense], name: 'layerlens_head_model' });
  seedDense(dense, settings.seed);
  const [kernel, bias] = dense.weights.map((w) => w.read() as tf.Variable);
  let optimizer: tf.Optimizer | undefined;
  try {
    const trainable: Trainable = {
      forward: (x) => tf.softmax(tf.add(tf.matMul(x, kernel), bias)),
      outputKind: 'probabilities',
      variables: [kernel, bias],
      state: dense.weights,
    };
    const bs = settings.batchSize;
    const valOrder = Array.from({ length: valSrc.length }, (_, i) => i);
    const data: TrainData = {
      trainSize: trainSrc.length,
      batchesPerEpoch: Math.ceil(trainSrc.length / bs),
      train: (epoch) => {
        if (!cached) cache.clear();
        return embeddingBatches(trainSrc, epochOrder(trainSrc.length, settings.seed, epoch), bs, cache, embed, k);
      },
      // Once cached, validation rows are small: big batches, few steps.
      validation: hasVal ? () => embeddingBatches(valSrc, valOrder, bs, cache, embed, k, 1024) : undefined,
    };
    const classes = classCounts(scan, split);
    const headParams = features * k + k;
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
      imageSize: [sh, sw],
      normalization,
      ...(normalizationFrom ? { normalizationFrom } : {}),
      skipped: scan.skipped,
      frozen: { paths: [`ONNX backbone up to ${cutPath}`], params: loaded.summary.totalParams },
      trainableParams: headParams,
      totalParams: loaded.summary.totalParams + headParams,
      head: { replaced: true, cutLayer: cutPath, units: k, reason: `the ONNX backbone runs in ONNX Runtime and keeps its weights; a new head for ${k} classes trains on its ${pool ? 'pooled ' : ''}features (${features})` },
      augment: 'none',
      embeddingCache: cached,
      threads: 1,
      warnings,
    });
    const { loop, metrics } = await trainWithProgress(
      trainable,
      data,
      {
        epochs: settings.epochs,
        learningRate: settings.learningRate,
        optimizerName: settings.optimizer,
        lrSchedule: settings.lrSchedule,
        earlyStopping: settings.earlyStopping,
        monitor,
        seed: settings.seed,
        signal,
        // The best epoch's weights are saved unless the recipe says "keep": "last".
        keepBest: settings.keep === 'best',
        batchesPerEpoch: data.batchesPerEpoch,
        throttleMs: o.batchProgressMs ?? 250,
        onProgress,
      },
      (opt) => (optimizer = opt),
    );
    checkCancel(signal, names);

    const head: OnnxHead = { kernel: (await kernel.data()) as Float32Array, bias: (await bias.data()) as Float32Array, features, classes: k, pool };
    const bytes = encodeModel(appendHead(model.files.model, cut, head, labels, model.inputDims[0] ?? 'batch'));
    const file = path.basename(loaded.files.modelJsonPath);
    const skipped = [...scan.skipped, ...trainSrc.badImages, ...valSrc.badImages];
    const evaluation = validationEvaluation(loop, labels, (i) => split.val[i].file);
    const metadata = (outputPath: string) => ({
      ...jobMetadata({ outputPath, loaded, labels, normalization, imageSize: [sh, sw] }),
      format: 'onnx',
      dataset: relativeTo(outputPath, scan.dir),
      backend: `onnxruntime (backbone), ${backendName()} (head)`,
      head: { replaced: true, cutLayer: cutPath, cutValue: cut, pooled: pool, nodes: [...(pool ? ['GlobalAveragePool', 'Flatten'] : []), 'Gemm', 'Softmax'] },
      frozen: ['(the whole ONNX backbone)'],
      settings,
      training: {
        ...loopOutcome(loop),
        trainImages: trainSrc.length,
        valImages: valSrc.length,
        skippedFiles: skipped.length,
        embeddingCache: cached,
      },
      // The seeded split's validation images (layer-lens evaluate repeats the split).
      validationImages: split.val.map((im) => relativeTo(outputPath, im.file)),
    });
    const metricsJson = (outputPath: string) => ({
      monitor: loop.monitor, bestEpoch: loop.bestEpoch, bestValue: loop.bestValue, lastValue: loop.lastValue, restored: loop.restored, stoppedEarly: loop.stoppedEarly, epochs: metrics,
      ...(evaluation ? { evaluation: { ...evaluation, images: evaluation.images.map((im) => ({ ...im, path: relativeTo(outputPath, im.path) })) } } : {}),
    });
    const outputPath = await saveResultFolder(
      output,
      async (tmp, folder) => {
        await writeFileAtomic(path.join(tmp, file), bytes);
        await writeFileAtomic(path.join(tmp, 'metadata.json'), JSON.stringify(metadata(folder), null, 2) + '\n');
        await writeFileAtomic(path.join(tmp, 'labels.txt'), labels.join('\n') + '\n');
        await writeFileAtomic(path.join(tmp, 'metrics.json'), JSON.stringify(metricsJson(folder), null, 2) + '\n');
        await writeFileAtomic(path.join(tmp, 'metrics.csv'), metricsCsv(metrics));
      },
      bytes.byteLength + 1024 * 1024,
      signal,
      names,
      (message) => onProgress({ type: 'warning', message }),
    );
    const cacheWarning = await disk?.save();
    if (cacheWarning) onProgress({ type: 'warning', message: cacheWarning });
    const end = endProgress(loop, outputPath, started, evaluation);
    onProgress(end);
    return {
      outputPath,
      modelPath: path.join(outputPath, file),
      labels,
      metrics,
      ...loopOutcome(loop),
      trainSize: trainSrc.length,
      valSize: valSrc.length,
      skipped,
      embeddingCache: cached,
      seconds: end.seconds,
      ...(evaluation ? { evaluation } : {}),
    };
  } finally {
    optimizer?.dispose();
    cache.clear();
    inputCache.clear();
    headModel.dispose();
  }
}
