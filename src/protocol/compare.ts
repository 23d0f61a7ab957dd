/**
 * Comparing two models with the same input (typically a model and its
 * fine-tuned child), as it travels from the engine to the host, the webview
 * and the CLI: the matched layers with their weight drift and activation
 * similarity, the layers that match nothing, both models' predictions, and
 * the side-by-side maps of one layer. Plain data, no tfjs, no Node, no DOM.
 *
 * A is the reference (the original, W0), B the compared model (W1): weight
 * drift is ||W1 − W0|| / ||W0||.
 */
import type { LayerMaps, Prediction } from './inspect';
import type { Normalization, Shape } from './model';

/** One model of the pair. */
export interface CompareSide {
  modelPath: string;
  name: string;
  labels?: string[];
  /** Top-k for the compared image, labelled with this model's own labels. */
  predictions: Prediction[];
  probabilities: boolean;
  totalParams: number;
}

/** A layer of A matched with a layer of B (same path, or same unique name, and the same output shape). */
export interface LayerDrift {
  /** Path in A. */
  path: string;
  /** Path in B (differs from `path` when matched by name). */
  pathB: string;
  matchedBy: 'path' | 'name';
  className: string;
  depth: number;
  isContainer: boolean;
  /** Output shape (both sides agree). */
  shape: Shape | Shape[];
  /** Values in the layer's weights (A's count), BatchNormalization's moving statistics included. */
  params: number;
  /** Whether B's layer was trainable as saved (a frozen layer saves trainable: false). */
  trainableB: boolean;
  /**
   * ||W_B − W_A|| / ||W_A|| over every weight of the layer, as one vector;
   * null when the layer has no weights (0/0), when A's weights are all zero,
   * or when the two layers' weights differ in shape (driftNote says which).
   */
  weightDrift: number | null;
  /** ||W_B − W_A|| (absolute). */
  weightChange: number;
  /** ||W_A||. */
  weightNorm: number;
  driftNote?: string;
  /** ||b − a|| / ||a|| of the layer's output on the compared image; null when a is all zeros. */
  activationChange: number | null;
  /** 'map' for [h, w, c] outputs, 'vector' for [n], 'other' otherwise (no maps to show). */
  kind: 'map' | 'vector' | 'other';
}

/** A layer of one side that matches no layer of the other, and why. */
export interface UnmatchedLayer {
  path: string;
  className: string;
  shape: Shape | Shape[];
  reason: string;
}

export interface CompareResult {
  a: CompareSide;
  b: CompareSide;
  imagePath: string;
  /** The image as both models saw it (resized, RGB, 0-255). */
  input: { width: number; height: number; rgb: Uint8Array };
  normalization: Normalization;
  /** Matched layers in A's order. */
  layers: LayerDrift[];
  onlyA: UnmatchedLayer[];
  onlyB: UnmatchedLayer[];
  notes: string[];
  ms: number;
}

/** Linear CKA of one matched layer over a set of images. */
export interface LayerSimilarity {
  path: string;
  /** In [0, 1]; 1 = the same representation up to rotation and scale. Null when undefined (fewer than 2 images, or constant activations). */
  cka: number | null;
  /** Features per image the CKA used (after subsampling). */
  features: number;
  /** Features per image of the layer's output. */
  totalFeatures: number;
}

export interface SimilarityResult {
  /** The folder the images came from, if any. */
  folder?: string;
  /** Images used (readable ones). */
  images: number;
  /** Images found in the folder before sampling. */
  found: number;
  layers: LayerSimilarity[];
  notes: string[];
  ms: number;
}

export interface SimilarityProgress {
  done: number;
  total: number;
}

/** One layer of A and of B side by side on the compared image, and their difference. */
export interface CompareMaps {
  path: string;
  kind: 'map' | 'vector';
  /**
   * A's and B's outputs, quantised per channel to the same range (the joint
   * min/max of both, in stats[c].min/max), so that equal bytes mean equal
   * values; mean/std/zeros are each side's own.
   */
  a: LayerMaps;
  b: LayerMaps;
  /**
   * |B − A|: byte 255 is a difference as large as the channel's joint range
   * (stats[c].min = 0, stats[c].max = that range); mean/std/zeros are those
   * of |B − A| itself.
   */
  diff: LayerMaps;
  /** Largest |B − A| over the layer. */
  maxAbsDiff: number;
}

/** Thresholds of the suggestions, in words and numbers (the view quotes them). */
export const suggestionThresholds = {
  /** Relative weight change below which a trainable layer "barely moved". */
  barelyMoved: 0.01,
  /** ... or below this fraction of the largest drift in the model. */
  barelyMovedOfMax: 0.05,
  /** CKA above which activations "stayed the same". */
  similar: 0.95,
  /** How many "moved most" layers to name. */
  top: 3,
} as const;

export interface DriftSuggestions {
  /** Layers whose weights did not change at all (frozen, or untouched by training). */
  unchanged: string[];
  /** Trainable layers that barely moved: candidates to freeze next time. */
  barelyMoved: string[];
  /** Layers whose weights moved most, largest first. */
  movedMost: string[];
  /** Layers whose activations changed most (lowest CKA), when similarity is known. */
  leastSimilar: string[];
  /** The same as sentences, for the view and the CLI. */
  lines: string[];
}

function list(names: string[], max = 8): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

const pct = (v: number) => (v >= 0.1 ? `${(v * 100).toFixed(0)}%` : v >= 0.001 ? `${(v * 100).toFixed(2)}%` : `${(v * 100).toExponential(1)}%`);

/**
 * Which layers barely moved (candidates to freeze next time) and which moved
 * most, from the weight drift and, when known, the activation similarity.
 * Containers are left out (their layers speak for them).
 */
export function driftSuggestions(layers: readonly LayerDrift[], similarity?: readonly LayerSimilarity[]): DriftSuggestions {
  const t = suggestionThresholds;
  const cka = new Map((similarity ?? []).map((s) => [s.path, s.cka]));
  const weighted = layers.filter((l) => !l.isContainer && l.weightDrift !== null);
  const unchanged = weighted.filter((l) => l.weightDrift === 0).map((l) => l.path);
  const moving = weighted.filter((l) => (l.weightDrift ?? 0) > 0);
  const max = Math.max(0, ...moving.map((l) => l.weightDrift ?? 0));
  const barely = moving
    .filter((l) => {
      const d = l.weightDrift ?? 0;
      const c = cka.get(l.path);
      return (d < t.barelyMoved || d < t.barelyMovedOfMax * max) && (c === undefined || c === null || c >= t.similar);
    })
    .map((l) => l.path);
  const most = [...moving].sort((x, y) => (y.weightDrift ?? 0) - (x.weightDrift ?? 0)).filter((l) => !barely.includes(l.path)).slice(0, t.top);
  const ckaRows = layers.filter((l) => !l.isContainer && typeof cka.get(l.path) === 'number' && (cka.get(l.path) as number) < t.similar);
  const least = ckaRows.sort((x, y) => (cka.get(x.path) as number) - (cka.get(y.path) as number)).slice(0, t.top);
  const lines: string[] = [];
  if (unchanged.length > 0) lines.push(`Unchanged (frozen or untouched): ${list(unchanged)}.`);
  if (barely.length > 0) {
    lines.push(`Barely moved (under ${pct(t.barelyMoved)} or ${pct(t.barelyMovedOfMax)} of the largest change${similarity ? `, CKA ≥ ${t.similar}` : ''}): ${list(barely)}. Candidates to freeze next time.`);
  }
  if (most.length > 0) lines.push(`Moved most: ${most.map((l) => `${l.path} (${pct(l.weightDrift ?? 0)})`).join(', ')}.`);
  if (least.length > 0) lines.push(`Activations changed most: ${least.map((l) => `${l.path} (CKA ${(cka.get(l.path) as number).toFixed(3)})`).join(', ')}.`);
  if (weighted.length === 0) lines.push('No matched layer has weights to compare.');
  return { unchanged, barelyMoved: barely, movedMost: most.map((l) => l.path), leastSimilar: least.map((l) => l.path), lines };
}
