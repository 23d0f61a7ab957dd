/**
 * Layer geometry checked at load. tfjs builds a convolution with a 0x0
 * kernel, a zero stride, or a kernel larger than its (valid-padded) input
 * without a word; running it then reads uninitialised wasm memory (garbage
 * maps), divides by zero ("Invalid typed array length: Infinity") or traps
 * ("memory access out of bounds"). So a layer's window sizes are checked in
 * the config before tfjs sees it, and every layer's output shape after the
 * build: a size of 0, a negative one, or one that is no whole number means
 * no image can run through the model.
 */
import type * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { clipText as clip } from './files';

/** Config fields that hold window sizes, strides or rates: each must be a whole number of at least 1. */
const windowFields: Record<string, string> = {
  kernel_size: 'kernel size',
  strides: 'stride',
  pool_size: 'pool size',
  dilation_rate: 'dilation rate',
  depth_multiplier: 'depth multiplier',
  size: 'upsampling size',
};
/** A window larger than this on one axis is no image model's (the engine feeds at most 4096x4096). */
const maxWindow = 4096;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const show = (v: unknown) => clip(JSON.stringify(v) ?? String(v), 60);

/**
 * Refuses a layer whose config gives a window, stride or rate that is not a
 * whole number from 1 to 4096, before tfjs builds anything. Walks nested
 * models and wrappers.
 */
export function checkLayerConfigs(topology: unknown, shown: string, depth = 0): void {
  if (depth > 200) return;
  if (Array.isArray(topology)) {
    for (const t of topology) checkLayerConfigs(t, shown, depth + 1);
    return;
  }
  if (!isObject(topology)) return;
  const cls = topology['class_name'];
  const config = topology['config'];
  if (typeof cls === 'string' && isObject(config)) {
    for (const [field, words] of Object.entries(windowFields)) {
      if (!(field in config) || config[field] === null || config[field] === undefined) continue;
      // UpSampling's "size" and the others may be one number or one per axis.
      const v = config[field];
      const values = Array.isArray(v) ? v : [v];
      const ok = values.length > 0 && values.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= maxWindow);
      if (!ok) {
        const name = typeof config['name'] === 'string' ? config['name'] : '?';
        throw new EngineError(
          'not-a-model',
          `${shown}: layer "${clip(name)}" (${clip(cls, 40)}) has ${words} ${show(v)}; each must be a whole number from 1 to ${maxWindow}. No image can run through it: its config is damaged. Re-export the model.`,
        );
      }
    }
  }
  for (const v of Object.values(topology)) if (typeof v === 'object' && v !== null) checkLayerConfigs(v, shown, depth + 1);
}

type Shape = (number | null)[];

function shapesOf(s: unknown): Shape[] {
  if (!Array.isArray(s)) return [];
  return Array.isArray(s[0]) ? (s as Shape[]) : [s as Shape];
}

const badDim = (d: number | null) => d !== null && !(Number.isInteger(d) && d >= 1);

function describeWindow(layer: tf.layers.Layer): string {
  const c = layer.getConfig() as Record<string, unknown>;
  const parts: string[] = [];
  const k = c['kernel_size'] ?? c['kernelSize'] ?? c['pool_size'] ?? c['poolSize'];
  if (Array.isArray(k)) parts.push(`window ${k.join('x')}`);
  const s = c['strides'];
  if (Array.isArray(s)) parts.push(`strides ${s.join('x')}`);
  if (typeof c['padding'] === 'string') parts.push(`${c['padding']} padding`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/**
 * Refuses a built model in which a layer's output has a size that is not a
 * whole number of at least 1 (a window larger than its input, and the like).
 * Walks nested models.
 */
export function checkOutputShapes(model: tf.LayersModel, shown: string): void {
  for (const layer of model.layers) {
    let out: Shape[];
    let inp: Shape[];
    try {
      out = shapesOf(layer.outputShape);
      const input = (layer as unknown as { input: { shape: Shape } | { shape: Shape }[] }).input;
      inp = (Array.isArray(input) ? input : [input]).map((t) => t.shape);
    } catch {
      continue; // a layer without a single shape (shared by several calls) is checked where it is called
    }
    if (out.some((s) => s.some(badDim))) {
      const fmt = (ss: Shape[]) => ss.map((s) => `[${s.map((d) => (d === null ? 'null' : String(d))).join(', ')}]`).join(', ');
      throw new EngineError(
        'not-a-model',
        `${shown}: layer "${clip(layer.name)}" (${layer.getClassName()}) would turn its input ${fmt(inp)} into ${fmt(out)}${describeWindow(layer)}: its window is larger than its input, or a size is zero. No image can run through the model: its config is damaged. Re-export the model.`,
      );
    }
    const inner = layer as unknown as tf.LayersModel;
    if (Array.isArray(inner.layers) && typeof inner.getLayer === 'function') checkOutputShapes(inner, shown);
  }
}
