/**
 * Forward and backward of each node kind of a compiled training step
 * (./plan.ts), on the wasm backend with Layer Lens's SIMD kernels.
 *
 * A forward returns the node's output and what its backward will need (its
 * `Saved`); a backward takes the output's gradient and returns the inputs'
 * gradients, adding the weights' gradients into f64 totals on the heap
 * (`Accumulators`). Tensors are created and freed explicitly: the executor
 * (./executor.ts) decides when each may go.
 */
import * as tf from '@tensorflow/tfjs';
import { inputGradient, filterGradient } from '../../kernels/conv2dBackprop';
import type { ConvGeometry } from '../../kernels/kernelUtil';
import type { SimdKernels } from '../../kernels/simd';
import { Rng } from '../../random';
import { withSeededRandom } from '../loop';
import type { BatchNormNode, ConvNode, PlanNode } from './plan';

/** f64 gradient totals on the wasm heap, one per trained variable (by index in the plan). */
export interface Accumulators {
  /** Heap offset of variable `v`'s totals, or undefined when it is not trained. */
  of(v: tf.LayerVariable): number | undefined;
  ofVariable(v: tf.Variable): number | undefined;
  /** Adds an f32 gradient tensor into the totals of `v` (generic layers). */
  addF32(v: tf.LayerVariable, grad: tf.Tensor): void;
}

/** What a node's backward needs from its forward. */
export interface Saved {
  /** Tensors the executor keeps alive until the backward ran (inputs or the output). */
  tensors: tf.Tensor[];
  /** Per-node numbers: geometry, batch statistics, the seed of a generic node. */
  x?: tf.Tensor;
  y?: tf.Tensor;
  inputs?: tf.Tensor[];
  geometry?: ConvGeometry;
  /** BatchNormalization in training mode: the batch's mean and 1/sqrt(var + eps) per channel. */
  mean?: Float64Array;
  invStd?: Float64Array;
  seed?: number;
}

export interface StepContext {
  s: SimdKernels;
  acc: Accumulators;
  /** Whether the gradient must reach each slot. */
  requiresGrad: boolean[];
  /** Every BatchNormalization in training mode reports its batch statistics here. */
  onBatchStats(node: BatchNormNode, rows: number, mean: Float64Array, variance: Float64Array): void;
}

const ptr = (c: StepContext, t: tf.TensorInfo) => c.s.pointerOf(t);

/** Which of its tensors a node's forward keeps for its backward. */
export interface Keeps {
  /** The first input (a convolution's or a BatchNormalization's x). */
  input: boolean;
  /** The output (the mask of a clamp). */
  output: boolean;
  /** Every input (a generic node's recomputation). */
  inputs: boolean;
}

/**
 * What `node` must keep, given which slots need a gradient and whether a
 * weight trains. The forward below and the memory plan (./memory.ts) both
 * read it, so the plan counts what the step holds.
 */
export function keeps(node: PlanNode, requiresGrad: readonly boolean[], isTrained: (v: tf.LayerVariable | undefined) => boolean): Keeps {
  const none: Keeps = { input: false, output: false, inputs: false };
  if (!requiresGrad[node.output]) return none;
  const needDx = requiresGrad[node.inputs[0]] ?? false;
  switch (node.kind) {
    case 'conv':
    case 'depthwise':
    case 'dense':
      return { ...none, input: isTrained(node.kernel) };
    case 'bn': {
      const weights = isTrained(node.gamma) || isTrained(node.beta);
      return { ...none, input: node.training && (needDx || weights), output: !!node.clamp && (needDx || (node.training && weights)) };
    }
    case 'clamp':
      return { ...none, output: needDx };
    case 'pool':
      // MaxPoolGrad reads the input and the output; AvgPoolGrad the input's shape (as a tensor).
      return { ...none, input: needDx, output: needDx && node.op === 'max' };
    case 'activation':
      return { ...none, input: needDx };
    case 'generic':
      return { ...none, inputs: true };
    default:
      return none;
  }
}

function trained(c: StepContext, v: tf.LayerVariable | undefined): number | undefined {
  return v ? c.acc.of(v) : undefined;
}

/**
 * A copy of a small weight (a handful of floats per channel), read from the
 * heap; a copy, because the next allocation may grow the heap and detach a view.
 */
function values(c: StepContext, v: tf.LayerVariable): Float32Array {
  const t = v.read();
  return c.s.f32(ptr(c, t), t.size).slice();
}

function convGeometry(node: ConvNode, x: tf.Tensor, filter: tf.Tensor): { geometry: ConvGeometry; pad: [[number, number], [number, number], [number, number], [number, number]] } {
  const [n, h, w, ch] = x.shape;
  const [t, b, l, r] = node.extraPad;
  const info = tf.backend_util.computeConv2DInfo(
    [n, h + t + b, w + l + r, ch], filter.shape as [number, number, number, number], node.strides, node.dilations, node.padding,
    undefined, node.kind === 'depthwise');
  const top = info.padInfo.top + t;
  const left = info.padInfo.left + l;
  return {
    geometry: {
      inHeight: h, inWidth: w, filterHeight: info.filterHeight, filterWidth: info.filterWidth,
      strideHeight: info.strideHeight, strideWidth: info.strideWidth,
      dilationHeight: info.dilationHeight, dilationWidth: info.dilationWidth, padTop: top, padLeft: left,
    },
    pad: [[0, 0], [top, info.padInfo.bottom + b], [left, info.padInfo.right + r], [0, 0]],
  };
}

/** Bytes of scratch convFilterGrad needs: 2 x 64 row pointers and 64 receptive fields of `k` floats. */
const convScratch = (k: number) => 64 * 8 + 64 * 4 * k;

/** Runs a node forward in training mode. */
export function forward(c: StepContext, node: PlanNode, xs: tf.Tensor[], seed: number): { y: tf.Tensor; saved: Saved } {
  const x = xs[0];
  const keep = keeps(node, c.requiresGrad, (v) => trained(c, v) !== undefined);
  switch (node.kind) {
    case 'conv':
    case 'depthwise': {
      const filter = node.kernel.read();
      const { geometry, pad } = convGeometry(node, x, filter);
      const attrs = { strides: node.strides, pad, dilations: node.dilations, dataFormat: 'NHWC', dimRoundingMode: undefined, activation: 'linear' };
      const name = node.kind === 'conv' ? (node.bias ? 'FusedConv2D' : 'Conv2D') : node.bias ? 'FusedDepthwiseConv2D' : 'DepthwiseConv2dNative';
      const inputs: tf.NamedTensorMap = node.bias ? { x, filter, bias: node.bias.read() } : { x, filter };
      const y = tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
      return { y, saved: { tensors: keep.input ? [x] : [], ...(keep.input ? { x } : {}), geometry } };
    }
    case 'bn':
      return batchNormForward(c, node, x, keep);
    case 'clamp': {
      const y = node.clamp.hi === 6 && node.clamp.lo === 0 ? tf.relu6(x) : node.clamp.hi === Infinity && node.clamp.lo === 0 ? tf.relu(x) : tf.clipByValue(x, node.clamp.lo, node.clamp.hi);
      return { y, saved: { tensors: keep.output ? [y] : [], ...(keep.output ? { y } : {}) } };
    }
    case 'dense': {
      const kernel = node.kernel.read();
      const rows = tf.reshape(x, [-1, kernel.shape[0]]);
      const flat = tf.fused.matMul({ a: rows as tf.Tensor2D, b: kernel as tf.Tensor2D, ...(node.bias ? { bias: node.bias.read() } : {}) });
      rows.dispose();
      const y = x.rank === 2 ? flat : tf.reshape(flat, [...x.shape.slice(0, -1), kernel.shape[1] as number]);
      if (y !== flat) flat.dispose();
      return { y, saved: { tensors: keep.input ? [x] : [], ...(keep.input ? { x } : {}) } };
    }
    case 'add':
      return { y: xs.length === 2 ? tf.add(xs[0], xs[1]) : tf.addN(xs), saved: { tensors: [] } };
    case 'pool': {
      const y = node.op === 'max'
        ? tf.maxPool(x as tf.Tensor4D, node.poolSize, node.strides, node.padding)
        : tf.avgPool(x as tf.Tensor4D, node.poolSize, node.strides, node.padding);
      const tensors = [...(keep.input ? [x] : []), ...(keep.output ? [y] : [])];
      return { y, saved: { tensors, ...(keep.input ? { x } : {}), ...(keep.output ? { y } : {}) } };
    }
    case 'gap':
      return { y: tf.mean(x, [1, 2]), saved: { tensors: [] } };
    case 'activation': {
      const y = node.apply(x);
      return { y, saved: { tensors: keep.input ? [x] : [], ...(keep.input ? { x } : {}) } };
    }
    case 'generic': {
      const y = runGeneric(node, xs, seed);
      return { y, saved: { tensors: keep.inputs ? xs.slice() : [], inputs: xs.slice(), seed } };
    }
  }
}

function runGeneric(node: Extract<PlanNode, { kind: 'generic' }>, xs: tf.Tensor[], seed: number): tf.Tensor {
  return withSeededRandom(new Rng(seed), () => node.layer.apply(xs.length === 1 ? xs[0] : xs, { ...node.kwargs, training: true }) as tf.Tensor);
}

function batchNormForward(c: StepContext, node: BatchNormNode, x: tf.Tensor, keep: Keeps): { y: tf.Tensor; saved: Saved } {
  const C = x.shape[x.rank - 1];
  const rows = x.size / C;
  const rowsPerImage = rows / x.shape[0];
  const gamma = node.gamma ? values(c, node.gamma) : undefined;
  const beta = node.beta ? values(c, node.beta) : undefined;
  const mean = new Float64Array(C);
  const invStd = new Float64Array(C);
  if (node.training) {
    const sums = c.s.malloc(C * 16);
    try {
      c.s.k.zeroF64(sums, 2 * C);
      c.s.k.channelMoments(ptr(c, x), rows, rowsPerImage, C, ptr(c, node.movingMean.read()), sums, sums + C * 8, c.s.scratch(C * 8));
      const shift = values(c, node.movingMean);
      const s = c.s.f64(sums, 2 * C);
      const variance = new Float64Array(C);
      for (let ch = 0; ch < C; ch++) {
        const m = s[ch] / rows;
        mean[ch] = shift[ch] + m;
        variance[ch] = Math.max(0, s[C + ch] / rows - m * m);
        invStd[ch] = 1 / Math.sqrt(variance[ch] + node.epsilon);
      }
      c.onBatchStats(node, rows, mean, variance);
    } finally {
      c.s.free(sums);
    }
  } else {
    const mm = values(c, node.movingMean);
    const mv = values(c, node.movingVariance);
    for (let ch = 0; ch < C; ch++) {
      mean[ch] = mm[ch];
      invStd[ch] = 1 / Math.sqrt(mv[ch] + node.epsilon);
    }
  }
  const scale = new Float32Array(C);
  const shift = new Float32Array(C);
  for (let ch = 0; ch < C; ch++) {
    scale[ch] = (gamma ? gamma[ch] : 1) * invStd[ch];
    shift[ch] = (beta ? beta[ch] : 0) - mean[ch] * scale[ch];
  }
  const y = c.s.empty(x.shape);
  const scaleT = c.s.vector(scale);
  const shiftT = c.s.vector(shift);
  const clamp = node.clamp;
  c.s.k.affine(ptr(c, x), ptr(c, y), rows, C, ptr(c, scaleT), ptr(c, shiftT), clamp ? 1 : 0, clamp?.lo ?? 0, clamp?.hi ?? 0);
  scaleT.dispose();
  shiftT.dispose();
  const saved: Saved = { tensors: [], mean, invStd };
  if (keep.input) {
    saved.x = x;
    saved.tensors.push(x);
  }
  if (keep.output) {
    saved.y = y;
    saved.tensors.push(y);
  }
  return { y, saved };
}

/**
 * Runs a node backward: the gradients of its inputs (undefined where not
 * wanted), the weights' gradients added into the accumulators.
 */
export function backward(c: StepContext, node: PlanNode, dy: tf.Tensor, saved: Saved, xShapes: number[][]): (tf.Tensor | undefined)[] {
  const needDx = node.inputs.map((s) => c.requiresGrad[s]);
  const k = c.s.k;
  switch (node.kind) {
    case 'conv':
    case 'depthwise': {
      const g = saved.geometry!;
      const [n, h, w, ci] = xShapes[0];
      const [, oh, ow, co] = dy.shape;
      const filter = node.kernel.read();
      const dwAcc = trained(c, node.kernel);
      const dbAcc = trained(c, node.bias);
      if (dbAcc !== undefined) k.channelMoments(ptr(c, dy), n * oh * ow, oh * ow, co, 0, dbAcc, 0, c.s.scratch(co * 8));
      if (node.kind === 'depthwise' && node.multiplier === 1) {
        const dx = needDx[0] ? c.s.empty(xShapes[0]) : undefined;
        if (dx || dwAcc !== undefined) {
          const taps = g.filterHeight * g.filterWidth * ci;
          k.depthwiseBackward(
            dwAcc !== undefined ? ptr(c, saved.x!) : 0, ptr(c, dy), ptr(c, filter), dx ? ptr(c, dx) : 0, dwAcc ?? 0, c.s.scratch(taps * 4),
            n, h, w, ci, oh, ow, g.filterHeight, g.filterWidth, g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft);
        }
        return [dx];
      }
      if (dwAcc !== undefined) {
        if (node.kind === 'conv') {
          k.convFilterGrad(ptr(c, saved.x!), ptr(c, dy), dwAcc, c.s.scratch(convScratch(g.filterHeight * g.filterWidth * ci)), n, h, w, ci, oh, ow, co,
            g.filterHeight, g.filterWidth, g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft);
        } else {
          const grad = tf.tidy(() => filterGradient('depthwise', saved.x as tf.Tensor4D, dy as tf.Tensor4D, g));
          c.acc.addF32(node.kernel, grad);
          grad.dispose();
        }
      }
      if (!needDx[0]) return [undefined];
      return [tf.tidy(() => inputGradient(node.kind === 'conv' ? 'conv2d' : 'depthwise', dy as tf.Tensor4D, filter as tf.Tensor4D, g))];
    }
    case 'bn':
      return [batchNormBackward(c, node, dy, saved, needDx[0])];
    case 'clamp': {
      if (!needDx[0]) return [undefined];
      const dx = c.s.empty(dy.shape);
      k.clampGrad(ptr(c, dy), ptr(c, saved.y!), ptr(c, dx), dy.size, node.clamp.lo, node.clamp.hi);
      return [dx];
    }
    case 'dense': {
      const kernel = node.kernel.read();
      const [ci, co] = kernel.shape;
      const rows = dy.size / co;
      const dwAcc = trained(c, node.kernel);
      const dbAcc = trained(c, node.bias);
      if (dbAcc !== undefined) k.channelMoments(ptr(c, dy), rows, 1, co, 0, dbAcc, 0, c.s.scratch(co * 8));
      if (dwAcc !== undefined) k.convFilterGrad(ptr(c, saved.x!), ptr(c, dy), dwAcc, c.s.scratch(convScratch(0)), rows, 1, 1, ci, 1, 1, co, 1, 1, 1, 1, 1, 1, 0, 0);
      if (!needDx[0]) return [undefined];
      return [tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(dy, [rows, co]), kernel as tf.Tensor2D, false, true), xShapes[0]))];
    }
    case 'add':
      return needDx.map((need) => (need ? dy : undefined));
    case 'pool': {
      if (!needDx[0]) return [undefined];
      const attrs = { filterSize: node.poolSize, strides: node.strides, pad: node.padding } as unknown as tf.NamedAttrMap;
      return [node.op === 'max'
        ? (tf.engine().runKernel('MaxPoolGrad', { dy, input: saved.x!, output: saved.y! }, attrs) as tf.Tensor)
        : (tf.engine().runKernel('AvgPoolGrad', { dy, input: saved.x! }, attrs) as tf.Tensor)];
    }
    case 'gap': {
      if (!needDx[0]) return [undefined];
      const [n, h, w, ch] = xShapes[0];
      const dx = c.s.empty(xShapes[0]);
      k.spreadChannels(ptr(c, dy), ptr(c, dx), n, h * w, ch, 1 / (h * w));
      return [dx];
    }
    case 'activation': {
      if (!needDx[0]) return [undefined];
      const { value, grads } = tf.engine().gradients(() => node.apply(saved.x!), [saved.x!], dy, true);
      value.dispose();
      return [grads[0]];
    }
    case 'generic':
      return genericBackward(c, node, dy, saved, needDx);
  }
}

function batchNormBackward(c: StepContext, node: BatchNormNode, dy: tf.Tensor, saved: Saved, needDx: boolean): tf.Tensor | undefined {
  const C = dy.shape[dy.rank - 1];
  const rows = dy.size / C;
  const clamp = node.clamp;
  const k = c.s.k;
  const gammaAcc = trained(c, node.gamma);
  const betaAcc = trained(c, node.beta);
  const gamma = node.gamma ? values(c, node.gamma) : undefined;
  const invStd = saved.invStd!;
  const A = new Float32Array(C);
  const B = new Float32Array(C);
  const D = new Float32Array(C);
  for (let ch = 0; ch < C; ch++) A[ch] = (gamma ? gamma[ch] : 1) * invStd[ch];
  const yPtr = clamp ? ptr(c, saved.y!) : 0;
  const lo = clamp?.lo ?? 0;
  const hi = clamp?.hi ?? 0;
  let meanT: tf.Tensor | undefined;
  if (node.training) {
    meanT = c.s.vector(saved.mean!);
    const sums = c.s.malloc(C * 16);
    try {
      k.zeroF64(sums, 2 * C);
      k.bnGradReduce(ptr(c, dy), yPtr, ptr(c, saved.x!), rows, rows / dy.shape[0], C, ptr(c, meanT), clamp ? 1 : 0, lo, hi, sums, sums + C * 8, c.s.scratch(C * 8));
      const s = c.s.f64(sums, 2 * C);
      // dbeta = Σ g, dgamma = Σ g·x̂ = invStd · Σ g·(x - mean)
      if (betaAcc !== undefined) {
        const acc = c.s.f64(betaAcc, C);
        for (let ch = 0; ch < C; ch++) acc[ch] += s[ch];
      }
      if (gammaAcc !== undefined) {
        const acc = c.s.f64(gammaAcc, C);
        for (let ch = 0; ch < C; ch++) acc[ch] += s[C + ch] * invStd[ch];
      }
      // dx = A·(g - mean(g) - x̂·mean(g·x̂)), x̂ = (x - mean)·invStd
      for (let ch = 0; ch < C; ch++) {
        const meanGX = (s[C + ch] * invStd[ch]) / rows;
        B[ch] = -A[ch] * invStd[ch] * meanGX;
        D[ch] = (-A[ch] * s[ch]) / rows;
      }
    } finally {
      c.s.free(sums);
    }
  }
  if (!needDx) {
    meanT?.dispose();
    return undefined;
  }
  const dx = c.s.empty(dy.shape);
  const [aT, bT, dT] = [c.s.vector(A), c.s.vector(B), c.s.vector(D)];
  k.bnGradApply(ptr(c, dy), yPtr, node.training ? ptr(c, saved.x!) : 0, ptr(c, dx), rows, C, meanT ? ptr(c, meanT) : 0,
    ptr(c, aT), ptr(c, bT), ptr(c, dT), clamp ? 1 : 0, lo, hi, node.training ? 1 : 0);
  tf.dispose([aT, bT, dT]);
  meanT?.dispose();
  return dx;
}

function genericBackward(c: StepContext, node: Extract<PlanNode, { kind: 'generic' }>, dy: tf.Tensor, saved: Saved, needDx: boolean[]): (tf.Tensor | undefined)[] {
  const xs = saved.inputs!;
  const weights = node.layer.trainableWeights.filter((w) => trained(c, w) !== undefined);
  const wanted = xs.filter((_, i) => needDx[i]);
  if (wanted.length === 0 && weights.length === 0) return xs.map(() => undefined);
  const { value, grads } = tf.engine().gradients(
    () => runGeneric(node, xs, saved.seed!),
    [...wanted, ...weights.map((w) => w.read())],
    dy,
    true,
  );
  value.dispose();
  weights.forEach((w, i) => {
    const grad = grads[wanted.length + i];
    if (grad) {
      c.acc.addF32(w, grad);
      grad.dispose();
    }
  });
  let next = 0;
  return xs.map((_, i) => (needDx[i] ? grads[next++] : undefined));
}
