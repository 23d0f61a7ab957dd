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

/** One output of the model, as the inspector shows it. */
export interface OutputInfo {
  name: string;
  /** Shape for this image, batch dimension dropped. */
  shape: number[];
  /**
   * 'classes': top-k predictions (a distribution, labelled or many scores);
   * 'values': the values themselves (a regression, a few unlabelled scores);
   * 'image': an image-shaped output (an autoencoder's), shown as a picture.
   */
  kind: 'classes' | 'values' | 'image';
}

/** An image-shaped output in the input's pixel scale, and its difference to the input. */
export interface OutputImage {
  width: number;
  height: number;
  /** RGB, 0-255 (a one-channel output repeated). */
  rgb: Uint8Array;
  /** |output - input| per pixel, 0-255, when the output has the input's shape. */
  diff?: Uint8Array;
  /** The mean of `diff` in pixel units (0-255). */
  meanAbsDiff?: number;
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
  /** Every output of the model (absent in results from before several were shown). */
  outputs?: OutputInfo[];
  /** Index into `outputs` of the one `predictions`, `values` or `image` describe. */
  output?: number;
  /** Kind 'values': the chosen output's values in index order (at most 64). */
  values?: number[];
  /** Kind 'image': the chosen output as a picture. */
  image?: OutputImage;
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
  /** How it was made: Grad-CAM (gradients; TF.js models) or Score-CAM (masked inputs; ONNX models). Absent means Grad-CAM. */
  method?: 'grad-cam' | 'score-cam';
  /** Score-CAM: how many of the node's channels were weighed. */
  channels?: number;
}
