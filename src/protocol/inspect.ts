/**
 * Feature maps and predictions as they travel from the worker to the host and
 * on to the webview. Bulk data is a quantised Uint8Array (1 byte per value,
 * per-channel min/max to undo it), never a JSON array of numbers.
 */
import type { Normalization, Shape } from './model';

export type Colormap = 'viridis' | 'magma' | 'gray';

export interface ChannelStats {
  min: number;
  max: number;
  mean: number;
  std: number;
  /** Fraction of values exactly 0 (dead ReLUs show up here). */
  zeros: number;
}

/** What an inspection found for one layer (no bulk data). */
export interface LayerInfo {
  path: string;
  className: string;
  /** Output shape for this image, batch dimension dropped. */
  shape: number[];
  /** 'map' for [h, w, c] outputs, 'vector' for [n], 'other' otherwise. */
  kind: 'map' | 'vector' | 'other';
  /** Mean activation over the whole output (the layer list's bar). */
  mean: number;
  /** Fraction of zeros over the whole output. */
  zeros: number;
}

/** One layer's values, quantised per channel to uint8. */
export interface LayerMaps {
  path: string;
  kind: 'map' | 'vector';
  /** Channels (maps) or units (vectors). */
  channels: number;
  /** Size of each channel as sent (may be downsampled from `fullHeight`). */
  height: number;
  width: number;
  fullHeight: number;
  fullWidth: number;
  stats: ChannelStats[];
  /**
   * channels × height × width bytes, channel-major; byte b of channel c stands
   * for stats[c].min + b / 255 * (stats[c].max - stats[c].min). For vectors,
   * height = width = 1 and one shared min/max (stats[0]) quantises all units.
   */
  data: Uint8Array;
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
}

export interface InspectRequest {
  modelPath: string;
  imagePath: string;
  normalization: Normalization;
}

/** The result of one forward pass: per-layer info and the top-k predictions. */
export interface InspectResult {
  imagePath: string;
  /** The image as the model saw it (resized, RGB, 0-255), for overlays. */
  input: { width: number; height: number; rgb: Uint8Array };
  inputShape: Shape;
  normalization: Normalization;
  layers: LayerInfo[];
  predictions: Prediction[];
  /** True when the output is a probability distribution (softmax-like). */
  probabilities: boolean;
  ms: number;
  /** What the user should know about this result (e.g. "no layer outputs a feature map"). */
  notes?: string[];
}

export interface GradCamResult {
  layerPath: string;
  classIndex: number;
  label: string;
  height: number;
  width: number;
  /** Heatmap in [0, 255], height × width. */
  heat: Uint8Array;
}
