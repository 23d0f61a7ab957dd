/**
 * The host<->webview protocol. The webview asks through rpc requests (methods
 * below), every one validated on the host against its zod schema before use:
 * a webview message is untrusted input. The host pushes events (model
 * changed, freeze changed, training progress) as `{ kind: 'event', event }`.
 */
import { z } from 'zod';
import type { CompareMaps, CompareResult, SimilarityProgress, SimilarityResult } from './compare';
import type { EmbedProgress, LatentMap, LatentState, Neighbor, Thumbnail } from './embed';
import type { GradCamResult, InspectResult, LayerMaps } from './inspect';
import { normalizations, type ModelSummary, type Normalization } from './model';
import type { TrainProgress } from './train';

export const normalizationSchema = z.enum(normalizations);

/** Params schema of every method the webview may call. */
export const webviewRequestSchemas = {
  ready: z.object({}).strict(),
  pickImage: z.object({}).strict(),
  inspect: z.object({ imagePath: z.string().min(1).max(4096).optional(), normalization: normalizationSchema, output: z.number().int().min(0).max(1000).optional() }).strict(),
  layerMaps: z.object({ layerPath: z.string().min(1).max(4096), maxSize: z.number().int().min(8).max(4096) }).strict(),
  gradCam: z.object({ layerPath: z.string().min(1).max(4096), classIndex: z.number().int().min(0).max(100000) }).strict(),
  setFrozen: z.object({ paths: z.array(z.string().min(1).max(4096)).max(100000), frozen: z.boolean() }).strict(),
  exportPng: z.object({ fileName: z.string().min(1).max(255), png: z.instanceof(Uint8Array) }).strict(),
  openImage: z.object({ path: z.string().min(1).max(4096) }).strict(),
  imageThumbnail: z.object({ path: z.string().min(1).max(4096), size: z.number().int().min(16).max(1024) }).strict(),
  stopTraining: z.object({}).strict(),
  augmentPreview: z.object({}).strict(),
  // Latent tab: the folder comes from a host dialog (or the Compute Embeddings command); the host accepts only a folder it handed out or one inside the workspace.
  latentState: z.object({}).strict(),
  latentPickFolder: z.object({}).strict(),
  latentMap: z.object({ datasetDir: z.string().min(1).max(4096), method: z.enum(['pca', 'umap']), layerPath: z.string().min(1).max(4096).optional(), normalization: normalizationSchema }).strict(),
  latentNeighbors: z.object({ index: z.number().int().min(0).max(10_000_000), k: z.number().int().min(1).max(100) }).strict(),
  latentThumbnail: z.object({ index: z.number().int().min(0).max(10_000_000) }).strict(),
  latentExport: z.object({}).strict(),
  // Compare tab: the reference model and the image set are chosen on the host (quick picks), never sent as paths.
  compareState: z.object({}).strict(),
  pickReference: z.object({}).strict(),
  pickImageSet: z.object({}).strict(),
  compare: z.object({ normalization: normalizationSchema }).strict(),
  compareMaps: z.object({ layerPath: z.string().min(1).max(4096), maxSize: z.number().int().min(8).max(4096) }).strict(),
  compareSimilarity: z.object({ normalization: normalizationSchema, maxImages: z.number().int().min(2).max(256) }).strict(),
  // Training tab: the model's current or last run (it survives the webview being rebuilt), and its result card's actions by id.
  trainingState: z.object({}).strict(),
  runAction: z.object({ id: z.string().min(1).max(64) }).strict(),
  /** The probe of the next fine-tune: the current image and this layer; `pinned` keeps it when the selection changes. */
  setProbe: z.object({ layerPath: z.string().min(1).max(4096).nullable(), pinned: z.boolean() }).strict(),
} as const;

export type WebviewMethod = keyof typeof webviewRequestSchemas;

/**
 * Checks one message from the webview before anything acts on it: it must be
 * an rpc request for a known method with params that pass that method's
 * schema, or a cancel. Returns why not, for the log, otherwise.
 */
export function checkWebviewMessage(m: unknown): { ok: true } | { ok: false; reason: string; id?: number } {
  if (typeof m !== 'object' || m === null) return { ok: false, reason: `not an object (${typeof m})` };
  const r = m as { kind?: unknown; id?: unknown; method?: unknown; params?: unknown };
  if (typeof r.id !== 'number' || !Number.isSafeInteger(r.id)) return { ok: false, reason: 'no numeric id' };
  if (r.kind === 'cancel') return { ok: true };
  if (r.kind !== 'request') return { ok: false, reason: `unexpected kind ${JSON.stringify(r.kind)?.slice(0, 40)}`, id: r.id };
  if (typeof r.method !== 'string' || !Object.prototype.hasOwnProperty.call(webviewRequestSchemas, r.method)) {
    return { ok: false, reason: `unknown request ${JSON.stringify(r.method)?.slice(0, 60)}`, id: r.id };
  }
  const parsed = webviewRequestSchemas[r.method as WebviewMethod].safeParse(r.params);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `malformed "${r.method}" request (${issue ? `${issue.path.join('.') || 'params'}: ${issue.message}` : 'invalid'})`, id: r.id };
  }
  return { ok: true };
}

export interface InitState {
  summary: ModelSummary | null;
  /** The load error, when the model failed to load. */
  error: string | null;
  backend: string | null;
  frozen: string[];
  normalization: Normalization;
  /** Why this preset: "metadata.json (Teachable Machine)" or "setting". */
  normalizationSource: string;
  imagePath: string | null;
  workspaceTrusted: boolean;
}

export interface WebviewApi {
  ready: { params: z.infer<(typeof webviewRequestSchemas)['ready']>; result: InitState; progress: never };
  pickImage: { params: z.infer<(typeof webviewRequestSchemas)['pickImage']>; result: string | null; progress: never };
  inspect: { params: z.infer<(typeof webviewRequestSchemas)['inspect']>; result: InspectResult; progress: never };
  layerMaps: { params: z.infer<(typeof webviewRequestSchemas)['layerMaps']>; result: LayerMaps; progress: never };
  gradCam: { params: z.infer<(typeof webviewRequestSchemas)['gradCam']>; result: GradCamResult; progress: never };
  setFrozen: { params: z.infer<(typeof webviewRequestSchemas)['setFrozen']>; result: void; progress: never };
  exportPng: { params: z.infer<(typeof webviewRequestSchemas)['exportPng']>; result: string | null; progress: never };
  /** 'opened' in another editor group, 'preview': there is none, so the webview shows it (the inspector is never split). */
  openImage: { params: z.infer<(typeof webviewRequestSchemas)['openImage']>; result: 'opened' | 'preview' | 'refused'; progress: never };
  /** A PNG data URL of an image of the workspace or the model's folder. */
  imageThumbnail: { params: z.infer<(typeof webviewRequestSchemas)['imageThumbnail']>; result: string; progress: never };
  stopTraining: { params: z.infer<(typeof webviewRequestSchemas)['stopTraining']>; result: void; progress: never };
  augmentPreview: { params: z.infer<(typeof webviewRequestSchemas)['augmentPreview']>; result: AugmentPreview; progress: never };
  latentState: { params: z.infer<(typeof webviewRequestSchemas)['latentState']>; result: LatentState; progress: never };
  latentPickFolder: { params: z.infer<(typeof webviewRequestSchemas)['latentPickFolder']>; result: string | null; progress: never };
  latentMap: { params: z.infer<(typeof webviewRequestSchemas)['latentMap']>; result: LatentMap; progress: EmbedProgress };
  latentNeighbors: { params: z.infer<(typeof webviewRequestSchemas)['latentNeighbors']>; result: Neighbor[]; progress: never };
  latentThumbnail: { params: z.infer<(typeof webviewRequestSchemas)['latentThumbnail']>; result: Thumbnail; progress: never };
  latentExport: { params: z.infer<(typeof webviewRequestSchemas)['latentExport']>; result: string | null; progress: never };
  compareState: { params: z.infer<(typeof webviewRequestSchemas)['compareState']>; result: CompareState; progress: never };
  pickReference: { params: z.infer<(typeof webviewRequestSchemas)['pickReference']>; result: CompareTarget | null; progress: never };
  pickImageSet: { params: z.infer<(typeof webviewRequestSchemas)['pickImageSet']>; result: string | null; progress: never };
  compare: { params: z.infer<(typeof webviewRequestSchemas)['compare']>; result: CompareResult; progress: never };
  compareMaps: { params: z.infer<(typeof webviewRequestSchemas)['compareMaps']>; result: CompareMaps; progress: never };
  compareSimilarity: { params: z.infer<(typeof webviewRequestSchemas)['compareSimilarity']>; result: SimilarityResult; progress: SimilarityProgress };
  setProbe: { params: z.infer<(typeof webviewRequestSchemas)['setProbe']>; result: ProbeState | null; progress: never };
  trainingState: { params: z.infer<(typeof webviewRequestSchemas)['trainingState']>; result: TrainingSnapshot | null; progress: never };
  runAction: { params: z.infer<(typeof webviewRequestSchemas)['runAction']>; result: void; progress: never };
}

/** What a finished job offers (the toast's actions, kept on the Training tab until the next run). */
export interface RunCard {
  title: string;
  lines: string[];
  actions: { id: string; label: string }[];
}

/** A model's current or last training run, as the Training tab draws it. */
export interface TrainingSnapshot {
  job: 'finetune' | 'pretext';
  /** Every message but the batches, paths as the workspace names them. */
  progress: TrainProgress[];
  /** [epoch + fraction, running loss] of the batches (thinned on long runs). */
  batches: [number, number][];
  running: boolean;
  stopped?: { status: 'cancelled' | 'failed'; message: string };
  card?: RunCard;
}

/** The model the Compare tab compares this one with (A, the reference). */
export interface CompareTarget {
  path: string;
  name: string;
}

export interface CompareState {
  reference: CompareTarget | null;
  /** Folder of the images the similarity runs on (chosen, or the default the host found). */
  imageSet: string | null;
  /** The host was just asked to compare (a command): show the Compare tab. */
  focus: boolean;
}

/** The image and layer whose maps the next fine-tune sends after every epoch. */
export interface ProbeState {
  imagePath: string;
  layerPath: string;
  pinned: boolean;
}

/** Augmented versions of the current image, as the recipe's settings make them. */
export interface AugmentPreview {
  /** E.g. "flip+rotate(15)", or "none". */
  summary: string;
  width: number;
  height: number;
  /** RGB bytes, one array per sample. */
  images: Uint8Array[];
}

/** What the host pushes without being asked. */
export type HostEvent =
  | { type: 'model'; summary: ModelSummary | null; error: string | null }
  | { type: 'backend'; name: string }
  | { type: 'freeze'; frozen: string[]; trainableParams: number; totalParams: number }
  | { type: 'image'; imagePath: string }
  | { type: 'train'; progress: TrainProgress }
  /** Compare this model with `reference` (Layer Lens: Compare Models…): the Compare tab opens. */
  | { type: 'compare'; reference: CompareTarget }
  /** Embeddings of this folder were computed (Layer Lens: Compute Embeddings…): the Latent tab shows their map. */
  | { type: 'latent'; datasetDir: string; layerPath: string | null }
  /** A run ended without a TrainEnd: cancelled or failed (nothing was saved). */
  | { type: 'trainStopped'; status: 'cancelled' | 'failed'; message: string }
  /** What the finished job offers (its toast's actions), on the Training tab's result card. */
  | { type: 'trainCard'; card: RunCard }
  /** Augmented samples with the settings the Fine-Tune form is about to start with. */
  | { type: 'augmentPreview'; preview: AugmentPreview };

export interface EventMessage {
  kind: 'event';
  event: HostEvent;
}

export function isEventMessage(m: unknown): m is EventMessage {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'event';
}
