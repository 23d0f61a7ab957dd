/**
 * What the worker does with a computed set of embeddings: keeps the latest
 * few in memory (by id) and answers the latent-space map's requests on them:
 * the 2-D projection, a point's thumbnail, its nearest neighbours, the
 * Projector export; and builds the advisor's report.
 */
import { randomBytes } from 'node:crypto';
import { EngineError } from '../errors';
import { imageThumbnail } from '../image';
import type { LoadedModel } from '../model';
import type { AdvisorReport } from '../../protocol/advise';
import { adviseFreeze } from './advisorRule';
import type { EmbeddingSummary, EmbedProgress, LatentMap, Neighbor, ProjectionMethod, Thumbnail, TsvExport } from '../../protocol/embed';
import { freezeUpTo } from '../../protocol/freezePlan';
import { chanceCorrected, linearProbe, silhouette, varianceRatio } from './advisor';
import type { EmbeddingSet } from './compute';
import { CosineIndex } from './knn';
import { pca } from './pca';
import { writeProjectorFiles } from './tsv';
import { umap2d } from './umap';

export interface HeldSet extends EmbeddingSet {
  id: string;
  labels: Int32Array;
  index?: CosineIndex;
}

/** The latest sets by id (a few: each may hold 10,000 x 1,024 floats). */
export class EmbeddingSets {
  private readonly sets = new Map<string, HeldSet>();

  constructor(private readonly max = 3) {}

  add(set: EmbeddingSet): HeldSet {
    const id = randomBytes(6).toString('hex');
    const held: HeldSet = { ...set, id, labels: Int32Array.from(set.images, (im) => im.label) };
    this.sets.set(id, held);
    while (this.sets.size > this.max) this.sets.delete(this.sets.keys().next().value as string);
    return held;
  }

  get(id: string): HeldSet {
    const s = this.sets.get(id);
    if (!s) throw new EngineError('bad-input', 'these embeddings are no longer in memory (the worker restarted or newer ones replaced them); compute the map again.');
    return s;
  }

  summary(set: HeldSet): EmbeddingSummary {
    return { ...set.summary, setId: set.id };
  }

  clear(): void {
    this.sets.clear();
  }
}

export async function projectSet(
  set: HeldSet,
  summary: EmbeddingSummary,
  method: ProjectionMethod,
  o: { seed?: number; signal?: AbortSignal; onProgress?: (p: EmbedProgress) => void } = {},
): Promise<LatentMap> {
  const n = set.images.length;
  const started = performance.now();
  let xy: Float32Array;
  let explained: [number, number] | undefined;
  if (method === 'pca') {
    const r = pca(set.vectors, n, set.dim, 2, { seed: o.seed });
    xy = r.projection;
    explained = [r.explained[0], r.explained[1]];
  } else {
    xy = await umap2d(set.vectors, n, set.dim, { seed: o.seed, signal: o.signal, onProgress: (done, total) => o.onProgress?.({ type: 'project', method, done, total }) });
  }
  return {
    summary,
    method,
    xy,
    labels: set.labels,
    paths: set.images.map((im) => im.rel),
    ...(explained ? { explained } : {}),
    projectionMs: Math.round(performance.now() - started),
  };
}

function checkIndex(set: HeldSet, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= set.images.length) throw new EngineError('bad-input', `point ${index} is not in this map (${set.images.length} points).`);
}

/** A PNG data URL of the image, at most `size` pixels on its longer side. */
export async function thumbnail(set: HeldSet, index: number, size: number): Promise<Thumbnail> {
  checkIndex(set, index);
  const im = set.images[index];
  return { index, path: im.rel, absPath: im.file, dataUrl: await imageThumbnail(im.file, size, im.rel, !im.outside) };
}

export function neighbors(set: HeldSet, index: number, k: number): Neighbor[] {
  checkIndex(set, index);
  set.index ??= new CosineIndex(set.vectors, set.dim);
  return set.index.neighbors(index, Math.max(1, Math.min(k, 100))).map((s) => ({ index: s.index, path: set.images[s.index].rel, label: set.labels[s.index], similarity: s.similarity }));
}

export async function exportProjector(set: HeldSet, dir: string, o: { force?: boolean } = {}): Promise<TsvExport> {
  return writeProjectorFiles(dir, { vectors: set.vectors, dim: set.dim, paths: set.images.map((im) => im.rel), labels: set.labels, classes: set.classes }, o);
}

/** Freeze-early's stopping point: the middle one of the layers with weights before the cut. */
function earlyBlockEnd(loaded: LoadedModel, cut: string): string | null {
  const rows = loaded.summary.layers;
  const cutIndex = rows.findIndex((r) => r.path === cut);
  const before = (cutIndex >= 0 ? rows.slice(0, cutIndex + 1) : rows).filter((r) => !r.isContainer && r.params > 0);
  if (before.length < 2) return null;
  return before[Math.ceil(before.length / 2) - 1].path;
}

export function adviseOn(loaded: LoadedModel, set: HeldSet, o: { seed: number; learningRate: number }): AdvisorReport {
  const classes = set.classes;
  if (!classes || classes.length < 2) {
    throw new EngineError('bad-dataset', `${set.summary.datasetDir} is not a folder with one sub-folder of images per class; the advisor compares classes, so it needs at least 2.`);
  }
  const k = classes.length;
  const probe = linearProbe(set.vectors, set.dim, set.labels, k, o.seed);
  const similarity = chanceCorrected(probe.accuracy, probe.chance);
  const counts = classes.map((_, c) => set.summary.counts[c] ?? 0);
  const advice = adviseFreeze(Math.min(...counts), similarity);
  const layer = set.summary.layer;
  let planUpTo: string | null = null;
  if (loaded.onnx) {
    // An ONNX backbone runs in ONNX Runtime, which cannot train: a new head is the one choice, and there is no plan to write.
    if (advice.recommendation !== 'freeze-all') {
      advice.reasons.push(`${loaded.summary.name} is an ONNX model: Layer Lens trains only a new head on its frozen backbone (ONNX Runtime has no training), so the advice above can be followed only with the model in a trainable format (TF.js or Keras).`);
    }
    return { ...adviceReport(loaded, set, o, probe, similarity, counts, advice), plan: [], planUpTo: null };
  }
  if (advice.recommendation === 'freeze-all') planUpTo = layer;
  else if (advice.recommendation === 'freeze-early') planUpTo = earlyBlockEnd(loaded, layer);
  const plan = planUpTo ? freezeUpTo(loaded.summary.layers, planUpTo) : [];
  return { ...adviceReport(loaded, set, o, probe, similarity, counts, advice), plan, planUpTo };
}

function adviceReport(
  loaded: LoadedModel,
  set: HeldSet,
  o: { seed: number; learningRate: number },
  probe: ReturnType<typeof linearProbe>,
  similarity: number,
  counts: number[],
  advice: ReturnType<typeof adviseFreeze>,
): Omit<AdvisorReport, 'plan' | 'planUpTo'> {
  const classes = set.classes!;
  const k = classes.length;
  return {
    modelPath: loaded.files.modelJsonPath,
    datasetDir: set.summary.datasetDir,
    layer: set.summary.layer,
    classes: classes.map((name, c) => ({ name, images: counts[c] })),
    probe: { ...probe, seed: o.seed },
    similarity,
    silhouette: silhouette(set.vectors, set.dim, set.labels, k, o.seed),
    varianceRatio: varianceRatio(set.vectors, set.dim, set.labels, k),
    advice,
    learningRate: { recipe: o.learningRate, suggested: Number((o.learningRate * advice.learningRateFactor).toPrecision(3)) },
    embeddings: { computed: set.summary.computed, reused: set.summary.reused, cacheDir: set.summary.cacheDir },
  };
}
