/**
 * The one reading of a model's input shape as an image: height, width and
 * channels (RGB or greyscale), or a message that says why this model cannot
 * take images for this purpose and what to do. What a purpose needs differs:
 * the inspector takes any size (scaled from the image) and a rank-3 greyscale
 * input, a fine-tune may set the size in the recipe, embeddings need a fixed
 * size, the rotation pretext task a fixed square one.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from './errors';
import type { Shape } from '../protocol/model';

export interface InputGeometry {
  height: number;
  width: number;
  channels: number;
  /** 4 for [batch, height, width, channels], 3 for greyscale [batch, height, width]. */
  rank: 3 | 4;
}

export type GeometryNeed =
  /** Inspecting this image: a model that takes any size sees it scaled to at most 1024 px on its longer side. */
  | { purpose: 'inspect'; image: { width: number; height: number } }
  /** Embedding a folder: the size must be fixed. */
  | { purpose: 'embed' }
  /** Fine-tuning: a model that takes any size trains at the recipe's imageSize. */
  | { purpose: 'finetune'; imageSize?: [number, number] }
  /** The rotation pretext task: fixed and square. */
  | { purpose: 'pretext' };

/** Longest side used when a model accepts any input size (inspector). */
const FREE_SIZE_MAX = 1024;

/** Graph models write unknown sizes as -1, layers models as null. */
const dim = (d: number | null | undefined): number | null => (d === null || d === undefined || d < 0 ? null : d);

export function inputGeometry(name: string, shape: Shape, need: GeometryNeed): InputGeometry {
  const dims = shape.map((d) => d ?? '?').join(', ');
  const [, h0, w0, c0] = shape;
  const h = dim(h0);
  const w = dim(w0);
  switch (need.purpose) {
    case 'inspect': {
      if (shape.length !== 4 && shape.length !== 3) {
        throw new EngineError('bad-input', `${name} takes input [${dims}], not an image; inspecting with an image needs an input of [height, width, channels] (or [height, width] for greyscale).`);
      }
      const channels = shape.length === 4 ? (dim(c0) ?? 3) : 1;
      if (channels !== 1 && channels !== 3) {
        throw new EngineError('bad-input', `${name} expects ${channels}-channel input; Layer Lens feeds images as RGB (3 channels) or greyscale (1), so it cannot inspect this model with an image.`);
      }
      const k = Math.min(1, FREE_SIZE_MAX / Math.max(need.image.width, need.image.height));
      const height = h ?? Math.max(1, Math.round(need.image.height * k));
      const width = w ?? Math.max(1, Math.round(need.image.width * k));
      return { height, width, channels, rank: shape.length };
    }
    case 'embed': {
      if (!isImage(shape)) throw new EngineError('bad-input', `${name} takes inputs of shape [${dims}], not images; embeddings of an image folder need an image model.`);
      if (!h || !w) throw new EngineError('bad-input', `${name} accepts images of any size; Layer Lens needs a model with a fixed input size to compute embeddings.`);
      return { height: h, width: w, ...channelsOf(name, shape) };
    }
    case 'finetune': {
      if (!isImage(shape)) {
        throw new EngineError('bad-input', `${name} takes inputs of shape [${dims}], not images ([batch, height, width, channels], or [batch, height, width] for greyscale); fine-tuning on an image folder needs an image model.`);
      }
      const { channels, rank } = channelsOf(name, shape);
      const [sh, sw] = need.imageSize ?? [h, w];
      if (sh == null || sw == null) {
        throw new EngineError('bad-recipe', `${name} accepts images of any size, so the training size must be chosen: set "imageSize": [height, width] under "finetune" in layerlens.json.`);
      }
      if ((h != null && h !== sh) || (w != null && w !== sw)) {
        throw new EngineError('bad-recipe', `imageSize ${sh}x${sw} in layerlens.json does not fit ${name}, whose input is ${h}x${w}; remove imageSize or set it to [${h}, ${w}].`);
      }
      return { height: sh, width: sw, channels, rank };
    }
    case 'pretext': {
      if (!isImage(shape) || h == null || w == null) throw new EngineError('bad-input', `${name} takes inputs of shape [${dims}]; the rotation task needs an image model with a fixed input size.`);
      if (h !== w) throw new EngineError('bad-input', `${name} takes ${h}x${w} images; the rotation task turns images by 90 degrees, which needs a square input.`);
      return { height: h, width: w, ...channelsOf(name, shape) };
    }
  }
}

/** [batch, height, width, channels], or [batch, height, width]: greyscale without a channel axis (the standard MNIST model). */
const isImage = (shape: Shape): boolean => shape.length === 4 || shape.length === 3;

function channelsOf(name: string, shape: Shape): { channels: number; rank: 3 | 4 } {
  return shape.length === 3 ? { channels: 1, rank: 3 } : { channels: rgbOrGrey(name, shape[3]), rank: 4 };
}

/** The shape of a batch of `n` inputs: [n, h, w, c], or [n, h, w] for a model without a channel axis. */
export function batchShape(geo: InputGeometry, n: number): number[] {
  return geo.rank === 3 ? [n, geo.height, geo.width] : [n, geo.height, geo.width, geo.channels];
}

/** A [n, h, w] batch as [n, h, w, 1] for image operations (flips, rotations), and back. */
export function withChannelAxis<T extends tf.Tensor>(xs: tf.Tensor, fn: (x4: tf.Tensor4D) => T): T {
  if (xs.rank === 4) return fn(xs as tf.Tensor4D);
  return tf.tidy(() => {
    const y = fn(tf.expandDims(xs, -1) as tf.Tensor4D);
    return tf.squeeze(y, [-1]) as T;
  });
}

/** The channels of a [batch, height, width, channels] input (3 when unknown), which must be RGB or greyscale. */
function rgbOrGrey(name: string, c: number | null | undefined): number {
  const channels = dim(c) || 3;
  if (channels !== 1 && channels !== 3) throw new EngineError('bad-input', `${name} expects ${channels} input channels; Layer Lens feeds RGB (3) or greyscale (1) images.`);
  return channels;
}
