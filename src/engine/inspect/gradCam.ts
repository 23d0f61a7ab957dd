/**
 * Grad-CAM (Selvaraju et al. 2017): which parts of a feature map made the
 * model choose a class. The flat graph is split at the chosen layer; the rest
 * of the model becomes a function of that layer's output A, differentiated at
 * the A of the current image. Channel weights are the spatial means of the
 * gradient; the map is ReLU(sum_k w_k A_k), resized to the model's input and
 * scaled to 0-255. Works at any depth of nesting, since the flat graph has none.
 *
 * The class score is taken before the softmax when the model ends in one (a
 * Dense with softmax activation, or a Softmax/Activation layer): the paper
 * uses the pre-softmax score, and a confident softmax output (p = 0.9999999)
 * has gradients too small for float32 to keep.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import type { GradCamResult } from '../../protocol/inspect';
import { runFrom, stepsAfter, type FlatGraph, type Step } from './flatGraph';

function endsInSoftmax(step: Step): 'layer' | 'dense' | undefined {
  const config = step.layer.getConfig() as { activation?: unknown };
  const cls = step.layer.getClassName();
  if (cls === 'Softmax' || (cls === 'Activation' && config.activation === 'softmax')) return 'layer';
  if (cls === 'Dense' && config.activation === 'softmax') return 'dense';
  return undefined;
}

/** Dense without its activation: x W + b. */
function denseLogits(step: Step, x: tf.Tensor): tf.Tensor {
  const [kernel, bias] = step.layer.weights.map((w) => w.read());
  const z = tf.matMul(tf.reshape(x, [-1, kernel.shape[0]]), kernel as tf.Tensor2D);
  return bias ? tf.add(z, bias) : z;
}

export interface GradCamInput {
  graph: FlatGraph;
  /** Every slot's value for the current image (from runAll). */
  slots: tf.Tensor[];
  layerPath: string;
  classIndex: number;
  label: string;
  /** Size of the heatmap: the model's input. */
  height: number;
  width: number;
}

export async function computeGradCam(a: GradCamInput): Promise<GradCamResult> {
  const { graph: g, slots, layerPath, classIndex } = a;
  const layerSlot = g.layerSlots.get(layerPath)?.[0];
  if (layerSlot === undefined) throw new EngineError('bad-input', `Grad-CAM: the model has no layer "${layerPath}".`);
  const A = slots[layerSlot];
  if (A.rank !== 4) {
    throw new EngineError('bad-input', `Grad-CAM needs a layer with a feature map [h, w, c]; ${layerPath} outputs [${A.shape.slice(1).join(', ')}]. Pick a convolution or pooling layer.`);
  }
  const outSlot = g.outputSlots[0];
  const outputSize = slots[outSlot].size;
  if (!(Number.isInteger(classIndex) && classIndex >= 0 && classIndex < outputSize)) {
    throw new EngineError('bad-input', `Grad-CAM: class ${classIndex} does not exist; the model has ${outputSize} outputs (0-${outputSize - 1}).`);
  }
  let steps = stepsAfter(g, layerSlot);
  const last = g.steps[g.producer[outSlot]];
  if (!steps.includes(g.producer[outSlot]) && layerSlot !== outSlot) {
    throw new EngineError('bad-input', `Grad-CAM: the model's output does not depend on ${layerPath}.`);
  }
  const softmax = last && steps.includes(g.producer[outSlot]) ? endsInSoftmax(last) : undefined;
  if (softmax) steps = steps.filter((i) => i !== g.producer[outSlot]);

  const score = (x: tf.Tensor): tf.Scalar => {
    let out: tf.Tensor;
    if (softmax) {
      // Run up to the last layer, then take its pre-softmax values.
      const before = runFrom(g, slots, layerSlot, x, steps)[last.inputs[0]];
      out = softmax === 'dense' ? denseLogits(last, before) : before;
    } else {
      out = runFrom(g, slots, layerSlot, x, steps)[outSlot];
    }
    return tf.sum(tf.slice(tf.reshape(out, [-1]), classIndex, 1));
  };

  const heat = tf.tidy(() => {
    const grads = tf.grad(score)(A);
    const weights = tf.mean(grads, [0, 1, 2]);
    const cam = tf.relu(tf.sum(tf.mul(A, weights), -1, true)) as tf.Tensor4D;
    // Resized before scaling, so that the hottest pixel shown is 255 (an
    // isolated peak would otherwise be blurred below it by the interpolation).
    const resized = tf.image.resizeBilinear(cam, [a.height, a.width], false, true);
    const scaled = tf.div(resized, tf.maximum(tf.max(resized), 1e-12));
    return tf.cast(tf.clipByValue(tf.round(tf.mul(scaled, 255)), 0, 255), 'int32');
  });
  const bytes = await heat.data();
  heat.dispose();
  return { layerPath, classIndex, label: a.label, height: a.height, width: a.width, heat: Uint8Array.from(bytes) };
}
