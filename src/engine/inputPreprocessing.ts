/**
 * A model's own preprocessing at its input: a Rescaling or Normalization
 * layer (Keras 2 and 3 configs and tfjs's own names all arrive here as these
 * classes) that the image reaches first. Such a model scales its pixels
 * itself, so it must be fed raw 0-255 pixels: feeding it pixels already
 * scaled to [0, 1] makes it see values near 0 and gives plausible-looking
 * but wrong predictions.
 */
import * as tf from '@tensorflow/tfjs';
import type { InputPreprocessing, Normalization } from '../protocol/model';
import { NormalizationLayer } from './io/normalizationLayer';

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/0+$/, ''));

function numbers(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.flat(8).filter((x): x is number => typeof x === 'number');
  return [];
}

/** The first layer the input goes through, looking inside nested models; undefined when it is not a preprocessing layer. */
function firstLayer(model: tf.LayersModel, prefix = ''): { path: string; layer: tf.layers.Layer } | undefined {
  for (const layer of model.layers) {
    const path = prefix ? `${prefix}/${layer.name}` : layer.name;
    if (layer instanceof tf.LayersModel) return firstLayer(layer, path);
    if (layer.getClassName() !== 'InputLayer') return { path, layer };
  }
  return undefined;
}

export interface DetectedPreprocessing extends InputPreprocessing {
  /** The pixels this model should be fed. */
  normalization: Normalization;
  /** Why, in words, for the header, the CLI and the fine-tune log. */
  reason: string;
}

/** The model's own Rescaling/Normalization at its input, if it has one. */
export function detectInputPreprocessing(model: tf.LayersModel): DetectedPreprocessing | undefined {
  const first = firstLayer(model);
  if (!first) return undefined;
  const { path, layer } = first;
  const cls = layer.getClassName();
  if (cls === 'Rescaling') {
    const c = layer.getConfig();
    const scale = numbers(c['scale'])[0] ?? 1;
    const offset = numbers(c['offset'])[0] ?? 0;
    const description = `x * ${fmt(scale)} ${offset < 0 ? '-' : '+'} ${fmt(Math.abs(offset))}`;
    return { layer: path, className: cls, description, normalization: 'raw', reason: `the model's own Rescaling layer "${path}" (${description}) scales its input, so it gets raw 0-255 pixels` };
  }
  if (layer instanceof NormalizationLayer) {
    let means: number[] = [];
    try {
      const { mean, variance } = layer.stats();
      means = Array.from(mean.dataSync());
      tf.dispose([mean, variance]);
    } catch {
      // Not built: no values to judge by.
    }
    const description = `(x - mean) / std, mean ${means.slice(0, 3).map(fmt).join(', ')}${means.length > 3 ? ', …' : ''}`;
    // Adapted on raw pixels, its means are tens to hundreds; adapted on [0, 1] images, at most 1.
    const raw = means.length === 0 || Math.max(...means.map(Math.abs)) > 1.5;
    return {
      layer: path,
      className: cls,
      description,
      normalization: raw ? 'raw' : 'zeroOne',
      reason: raw
        ? `the model's own Normalization layer "${path}" (${description}) standardises its input, so it gets raw 0-255 pixels`
        : `the model's own Normalization layer "${path}" has means of at most 1, so it was adapted on pixels in [0, 1] and gets those`,
    };
  }
  return undefined;
}
