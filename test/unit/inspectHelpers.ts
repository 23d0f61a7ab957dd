/** What the inspector's tests share: fixtures, a model held in memory, reference computations. */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { toInputTensor, type DecodedImage } from '../../src/engine/image';
import { summarize, type LoadedModel } from '../../src/engine/model';
import type { Normalization } from '../../src/protocol/model';
import { fixture } from '../fixtures/models';
import { maxAbsDiff } from './helpers';

export const tmShared = path.resolve(__dirname, '../../../shared/fixtures/teachable-machine-leaves/model.json');
export const img = (name: string) => fixture('images', name);

/** A LoadedModel around an in-memory model, as loadModel would return it. */
export function inMemory(model: tf.LayersModel, name: string, labels?: string[]): LoadedModel {
  const modelJsonPath = path.join(fixture('in-memory'), name, 'model.json');
  return {
    files: { modelJsonPath, folder: path.dirname(modelJsonPath), format: 'layers', artifacts: {}, layerClasses: [], warnings: [] },
    summary: summarize(model, modelJsonPath, [], labels ? { labels } : {}),
    layers: model,
  };
}

/** The input exactly as the inspector builds it. */
export function inputFor(loaded: LoadedModel, image: DecodedImage, normalization: Normalization): tf.Tensor4D {
  const [, h, w, c] = loaded.summary.inputShape as number[];
  return tf.tidy(() => tf.expandDims(toInputTensor(image, h, w, normalization, c), 0) as tf.Tensor4D);
}


export function assertClose(actual: tf.Tensor, expected: tf.Tensor, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const e = expected.dataSync();
  let scale = 1;
  for (const v of e) scale = Math.max(scale, Math.abs(v));
  const d = maxAbsDiff(actual.dataSync(), e);
  assert.ok(d <= 1e-5 * scale, `${what}: max difference ${d}`);
}

/** The output of `layer` (inside `model`) for `x`, computed by a plain predict of an intermediate model. */
export function intermediate(model: tf.LayersModel, layerName: string, x: tf.Tensor): tf.Tensor {
  const m = tf.model({ inputs: model.inputs, outputs: model.getLayer(layerName).output as tf.SymbolicTensor });
  return m.predict(x) as tf.Tensor;
}
