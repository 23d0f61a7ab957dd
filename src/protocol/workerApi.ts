/**
 * The host<->worker protocol: every method the compute worker serves, with its
 * params, result and progress types. Types only; both sides import them.
 */
import type { CompareMaps, CompareResult, SimilarityProgress, SimilarityResult } from './compare';
import type { AdvisorReport } from './advise';
import type { EmbedParams, EmbedProgress, EmbeddingSummary, LatentMap, Neighbor, ProjectionMethod, Thumbnail, TsvExport } from './embed';
import type { PretextResult, PretextSettings } from './pretext';
import type { GradCamResult, InspectResult, LayerMaps } from './inspect';
import type { ModelSummary, Normalization } from './model';
import type { AugmentSettings, FinetuneSettings } from './recipe';
import type { FinetuneResult, TrainProgress } from './train';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendReport {
  name: 'tensorflow' | 'wasm' | 'cpu';
  notes: string[];
  initMs: number;
}

/** A backend as the UI names it (tfjs-node for the native TensorFlow binding). */
export function backendLabel(name: BackendReport['name']): string {
  return name === 'tensorflow' ? 'tfjs-node' : name;
}

export interface WorkerApi {
  /** `storageDir`: the extension's own storage, where caches go when a model's folder cannot be written. */
  init: { params: { prefer: BackendPreference; wasmDir?: string; displayRoot?: string; storageDir?: string }; result: BackendReport; progress: never };
  loadModel: { params: { path: string }; result: ModelSummary; progress: never };
  unloadModel: { params: { path: string }; result: void; progress: never };
  inspect: { params: { modelPath: string; imagePath: string; normalization: Normalization; output?: number }; result: InspectResult; progress: never };
  layerMaps: { params: { modelPath: string; layerPath: string; maxSize: number }; result: LayerMaps; progress: never };
  gradCam: { params: { modelPath: string; layerPath: string; classIndex: number }; result: GradCamResult; progress: never };
  finetune: {
    params: {
      modelPath: string;
      datasetDir: string;
      settings: FinetuneSettings;
      frozen: string[];
      /** What to train: the plan (default; a Teachable Machine export without one trains its head), every layer, or the head. */
      freeze?: 'plan' | 'none' | 'backbone';
      /** The training step's memory budget (layerLens.memoryLimitMB; absent: wasm's 4 GB). */
      memoryLimitMB?: number;
      outDir?: string;
      /** Live maps: this image's maps of this layer before training and after each epoch. */
      probe?: { imagePath: string; layerPath: string };
    };
    result: FinetuneResult;
    progress: TrainProgress;
  };
  augmentPreview: {
    params: { imagePath: string; settings: AugmentSettings; n: number; seed: number; height: number; width: number };
    result: { width: number; height: number; images: Uint8Array[] };
    progress: never;
  };
  /** A = the reference (e.g. the original), B = the compared model (e.g. its fine-tuned copy). */
  compare: { params: { aPath: string; bPath: string; imagePath: string; normalization: Normalization }; result: CompareResult; progress: never };
  compareMaps: { params: { aPath: string; bPath: string; layerPath: string; maxSize: number }; result: CompareMaps; progress: never };
  /** Linear CKA per matched layer over up to maxImages images from `folder` (or `imagePaths`). */
  compareSimilarity: {
    params: { aPath: string; bPath: string; folder?: string; imagePaths?: string[]; normalization: Normalization; maxImages: number };
    result: SimilarityResult;
    progress: SimilarityProgress;
  };
  // Embeddings (src/engine/embed): cached on disk; a set stays in the worker under its setId for the map's follow-up requests.
  computeEmbeddings: { params: EmbedParams; result: EmbeddingSummary; progress: EmbedProgress };
  latentMap: { params: EmbedParams & { method: ProjectionMethod; seed?: number }; result: LatentMap; progress: EmbedProgress };
  latentNeighbors: { params: { setId: string; index: number; k: number }; result: Neighbor[]; progress: never };
  latentThumbnail: { params: { setId: string; index: number; size: number }; result: Thumbnail; progress: never };
  /** A PNG data URL of an image file, at most `size` px on its longer side. */
  imageThumbnail: { params: { path: string; size: number }; result: string; progress: never };
  /** `force`: replace vectors.tsv/metadata.tsv that exist (the user said so); without it, refused with code 'output-exists'. */
  exportProjector: { params: { setId: string; dir: string; force?: boolean }; result: TsvExport; progress: never };
  advise: { params: { modelPath: string; datasetDir: string; learningRate: number; seed: number; normalization?: Normalization }; result: AdvisorReport; progress: EmbedProgress };
  pretrainRotation: { params: { modelPath: string; imagesDir: string; settings?: Partial<PretextSettings>; outDir?: string; memoryLimitMB?: number }; result: PretextResult; progress: TrainProgress };
  memory: { params: Record<string, never>; result: { numTensors: number; numBytes: number }; progress: never };
}
