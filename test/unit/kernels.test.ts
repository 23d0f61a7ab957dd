/**
 * The wasm training kernels (src/engine/kernels) against tfjs's cpu backend.
 *
 * Each case draws random inputs, computes the same gradient on cpu and on wasm
 * (with our kernels registered by initBackend), and compares the arrays with
 * max|a - b| / max(1, max|b|) <= 1e-4.
 *
 * Run: node --import tsx --test test/unit/kernels.test.ts
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/engine/backend';
import { setWasmKernelReplacements } from '../../src/engine/kernels';
import { maxPoolGradInto } from '../../src/engine/kernels/maxPoolGrad';
import { type Shape4, type Pad, randomArray, sizeOf, assertClose, on, both, kernel } from './kernelHelpers';
before(async () => {
  const info = await initBackend({ prefer: 'wasm' });
  assert.equal(info.name, 'wasm', `wasm backend did not initialise: ${info.notes.join('; ')}`);
});

describe('conv2d gradients on wasm match cpu', () => {
  interface Case { x: Shape4; f: Shape4; strides: number | [number, number]; pad: Pad }
  const cases: Case[] = [
    { x: [2, 7, 7, 3], f: [3, 3, 3, 4], strides: 1, pad: 'valid' },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 4], strides: 1, pad: 'same' },
    { x: [3, 7, 7, 2], f: [3, 3, 2, 5], strides: 2, pad: 'valid' },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 4], strides: 2, pad: 'same' },
    { x: [2, 9, 6, 3], f: [3, 2, 3, 4], strides: [2, 1], pad: 'same' },
    { x: [2, 6, 6, 2], f: [2, 2, 2, 3], strides: 1, pad: 'same' },
    { x: [2, 10, 9, 4], f: [5, 5, 4, 3], strides: 3, pad: 'valid' },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 2], strides: 2, pad: [[0, 0], [1, 2], [0, 3], [0, 0]] },
    { x: [2, 5, 5, 3], f: [1, 1, 3, 6], strides: 1, pad: 'valid' },
    // Filters smaller than the stride: some dx positions get no gradient.
    { x: [2, 7, 8, 3], f: [1, 1, 3, 4], strides: 2, pad: 'valid' },
    { x: [2, 9, 10, 2], f: [2, 2, 2, 3], strides: 3, pad: 'same' },
  ];
  for (const [i, c] of cases.entries()) {
    const name = `x${c.x.join('x')} f${c.f.join('x')} s${c.strides} ${JSON.stringify(c.pad)}`;
    it(`dx and dw via tf.grads: ${name}`, async () => {
      const xv = randomArray(sizeOf(c.x), 10 + i);
      const fv = randomArray(sizeOf(c.f), 20 + i);
      const r = await both(() => {
        const x = tf.tensor4d(xv, c.x);
        const f = tf.tensor4d(fv, c.f);
        const y = tf.conv2d(x, f, c.strides, c.pad);
        // A random weighting makes dy non-uniform, so every dy entry matters.
        const weight = tf.tensor(randomArray(y.size, 30 + i), y.shape);
        const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad), weight)));
        return g([x, f]);
      });
      assertClose(r.wasm[0], r.cpu[0], 'dx');
      assertClose(r.wasm[1], r.cpu[1], 'dw');
    });
  }

  /**
   * A 'ceil'-rounded conv lets its last window hang past the padded input.
   * tfjs's Conv2D gradient does not forward dimRoundingMode (so tf.grads
   * would disagree with itself across backends); the kernels are compared
   * directly, with the attribute given to both.
   */
  it("dimRoundingMode 'ceil' (raw kernels)", async () => {
    const xShape: Shape4 = [2, 8, 7, 2];
    const fShape: Shape4 = [3, 3, 2, 2];
    const dyShape: Shape4 = [2, 5, 4, 2]; // ceil((8 - 3 + 2) / 2 + 1), ceil((7 - 3 + 2) / 2 + 1)
    const xv = randomArray(sizeOf(xShape), 6);
    const fv = randomArray(sizeOf(fShape), 7);
    const dyv = randomArray(sizeOf(dyShape), 8);
    const attrs = { strides: 2, pad: 1, dataFormat: 'NHWC', dimRoundingMode: 'ceil' };
    const r = await both(() => [
      kernel(tf.Conv2DBackpropFilter, { x: tf.tensor4d(xv, xShape), dy: tf.tensor4d(dyv, dyShape) }, { ...attrs, filterShape: fShape }),
      kernel(tf.Conv2DBackpropInput, { dy: tf.tensor4d(dyv, dyShape), filter: tf.tensor4d(fv, fShape) }, { ...attrs, inputShape: xShape }),
    ]);
    assertClose(r.wasm[0], r.cpu[0], 'dw');
    assertClose(r.wasm[1], r.cpu[1], 'dx');
  });

  it('explicit padding larger than the filter (raw kernels)', async () => {
    // Most windows lie wholly in the padding; the input gradient crops dy.
    const xShape: Shape4 = [2, 3, 4, 2];
    const fShape: Shape4 = [2, 2, 2, 3];
    const pad = [[0, 0], [4, 3], [5, 2], [0, 0]];
    const dyShape: Shape4 = [2, 9, 10, 3];
    const xv = randomArray(sizeOf(xShape), 9);
    const fv = randomArray(sizeOf(fShape), 10);
    const dyv = randomArray(sizeOf(dyShape), 11);
    const attrs = { strides: 1, pad, dataFormat: 'NHWC' };
    const r = await both(() => [
      kernel(tf.Conv2DBackpropFilter, { x: tf.tensor4d(xv, xShape), dy: tf.tensor4d(dyv, dyShape) }, { ...attrs, filterShape: fShape }),
      kernel(tf.Conv2DBackpropInput, { dy: tf.tensor4d(dyv, dyShape), filter: tf.tensor4d(fv, fShape) }, { ...attrs, inputShape: xShape }),
    ]);
    assertClose(r.wasm[0], r.cpu[0], 'dw');
    assertClose(r.wasm[1], r.cpu[1], 'dx');
  });

  it('NCHW data format (raw kernels)', async () => {
    const xShape: Shape4 = [2, 3, 9, 8]; // [b, c, H, W]
    const fShape: Shape4 = [3, 3, 3, 4];
    const dyShape: Shape4 = [2, 4, 5, 4]; // stride 2, 'same'
    const xv = randomArray(sizeOf(xShape), 1);
    const fv = randomArray(sizeOf(fShape), 2);
    const dyv = randomArray(sizeOf(dyShape), 3);
    const attrs = { strides: 2, pad: 'same', dataFormat: 'NCHW' };
    const r = await both(() => [
      kernel(tf.Conv2DBackpropFilter, { x: tf.tensor4d(xv, xShape), dy: tf.tensor4d(dyv, dyShape) }, { ...attrs, filterShape: fShape }),
      kernel(tf.Conv2DBackpropInput, { dy: tf.tensor4d(dyv, dyShape), filter: tf.tensor4d(fv, fShape) }, { ...attrs, inputShape: xShape }),
    ]);
    assertClose(r.wasm[0], r.cpu[0], 'dw');
    assertClose(r.wasm[1], r.cpu[1], 'dx');
  });

  it("tfjs's own wasm Conv2DBackpropInput is still reachable as the fallback", async () => {
    const xShape: Shape4 = [2, 7, 7, 3];
    const fShape: Shape4 = [3, 3, 3, 4];
    const dyShape: Shape4 = [2, 4, 4, 4];
    const fv = randomArray(sizeOf(fShape), 4);
    const dyv = randomArray(sizeOf(dyShape), 5);
    const run = () => [kernel(tf.Conv2DBackpropInput, { dy: tf.tensor4d(dyv, dyShape), filter: tf.tensor4d(fv, fShape) },
      { strides: 2, pad: 'same', dataFormat: 'NHWC', inputShape: xShape })];
    const cpu = await on('cpu', run);
    setWasmKernelReplacements(false);
    try {
      assertClose((await on('wasm', run))[0], cpu[0], 'original dx');
    } finally {
      setWasmKernelReplacements(true);
    }
    assertClose((await on('wasm', run))[0], cpu[0], 'our dx');
  });
});

describe('depthwise conv gradients on wasm match cpu', () => {
  interface Case { x: Shape4; f: Shape4; strides: number; pad: Pad }
  const cases: Case[] = [
    { x: [2, 7, 7, 3], f: [3, 3, 3, 1], strides: 1, pad: 'valid' },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 2], strides: 1, pad: 'same' },
    { x: [3, 7, 7, 2], f: [3, 3, 2, 2], strides: 2, pad: 'valid' },
    { x: [2, 8, 8, 4], f: [3, 3, 4, 1], strides: 2, pad: 'same' },
    { x: [2, 9, 9, 3], f: [5, 5, 3, 2], strides: 2, pad: 'same' },
    { x: [2, 6, 5, 2], f: [2, 2, 2, 3], strides: 1, pad: 'same' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`dx and dw via tf.grads: x${c.x.join('x')} f${c.f.join('x')} s${c.strides} ${c.pad}`, async () => {
      const xv = randomArray(sizeOf(c.x), 40 + i);
      const fv = randomArray(sizeOf(c.f), 50 + i);
      const r = await both(() => {
        const x = tf.tensor4d(xv, c.x);
        const f = tf.tensor4d(fv, c.f);
        const y = tf.depthwiseConv2d(x, f, c.strides, c.pad);
        const weight = tf.tensor(randomArray(y.size, 60 + i), y.shape);
        const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad), weight)));
        return g([x, f]);
      });
      assertClose(r.wasm[0], r.cpu[0], 'dx');
      assertClose(r.wasm[1], r.cpu[1], 'dw');
    });
  }

  /**
   * tfjs refuses gradients of dilated depthwise convs, and its cpu backprop
   * kernels ignore the dilation in their index arithmetic, so the reference
   * for dilation 2 is the undilated cpu kernel on the equivalent filter with
   * zeros inserted ((f-1)*2+1 taps): same pads, same outputs.
   */
  for (const [i, c] of [
    { x: [2, 9, 9, 3] as Shape4, f: [3, 3, 3, 1] as Shape4, strides: 1, pad: 'same' as Pad },
    { x: [2, 10, 9, 2] as Shape4, f: [3, 3, 2, 2] as Shape4, strides: 1, pad: 'valid' as Pad },
    // tfjs's ops refuse a stride and a dilation both above 1; the kernels
    // can still be called so, and XNNPACK computes it.
    { x: [2, 11, 10, 3] as Shape4, f: [3, 3, 3, 2] as Shape4, strides: 2, pad: 'same' as Pad },
  ].entries()) {
    it(`dilation 2 (raw kernels): x${c.x.join('x')} f${c.f.join('x')} s${c.strides} ${c.pad}`, async () => {
      const d = 2;
      const [fh, fw, ch, m] = c.f;
      const effective: Shape4 = [(fh - 1) * d + 1, (fw - 1) * d + 1, ch, m];
      const xv = randomArray(sizeOf(c.x), 70 + i);
      const fv = randomArray(sizeOf(c.f), 80 + i);
      const outShape = tf.backend_util.computeConv2DInfo(c.x, c.f, c.strides, d, c.pad, undefined, true).outShape;
      const dyv = randomArray(sizeOf(outShape), 90 + i);

      const wasm = await on('wasm', () => [
        kernel(tf.DepthwiseConv2dNativeBackpropFilter, { x: tf.tensor4d(xv, c.x), dy: tf.tensor4d(dyv, outShape) },
          { strides: c.strides, dilations: d, pad: c.pad, filterShape: c.f }),
        kernel(tf.DepthwiseConv2dNativeBackpropInput, { dy: tf.tensor4d(dyv, outShape), filter: tf.tensor4d(fv, c.f) },
          { strides: c.strides, dilations: d, pad: c.pad, inputShape: c.x }),
      ]);
      const cpu = await on('cpu', () => {
        const f = tf.tensor4d(fv, c.f);
        // Zero-insert the filter: [fh,fw,..] -> [(fh-1)d+1, (fw-1)d+1, ..].
        const spread = tf.reshape(tf.pad(tf.reshape(f, [fh, 1, fw, 1, ch, m]), [[0, 0], [0, d - 1], [0, 0], [0, d - 1], [0, 0], [0, 0]]),
          [fh * d, fw * d, ch, m]);
        const fEff = tf.slice(spread, [0, 0, 0, 0], effective) as tf.Tensor4D;
        const dwEff = kernel(tf.DepthwiseConv2dNativeBackpropFilter, { x: tf.tensor4d(xv, c.x), dy: tf.tensor4d(dyv, outShape) },
          { strides: c.strides, dilations: 1, pad: c.pad, filterShape: effective });
        // Keep every d-th tap of the effective filter's gradient.
        const dw = tf.stridedSlice(dwEff, [0, 0, 0, 0], effective, [d, d, 1, 1]);
        const dx = kernel(tf.DepthwiseConv2dNativeBackpropInput, { dy: tf.tensor4d(dyv, outShape), filter: fEff },
          { strides: c.strides, dilations: 1, pad: c.pad, inputShape: c.x });
        return [dw, dx];
      });
      assertClose(wasm[0], cpu[0], 'dw');
      assertClose(wasm[1], cpu[1], 'dx');
    });
  }
});

describe('max-pool gradient on wasm matches cpu', () => {
  interface Case { x: Shape4; size: number | [number, number]; strides: number | [number, number]; pad: Pad; quantise?: number; shift?: number }
  const cases: Case[] = [
    { x: [2, 8, 8, 3], size: 2, strides: 2, pad: 'valid' },
    { x: [3, 9, 7, 4], size: 2, strides: 2, pad: 'valid' }, // odd sizes: last row/column unused
    { x: [2, 7, 9, 3], size: 2, strides: 2, pad: 'same' }, // odd sizes: last windows cut by the edge
    { x: [2, 9, 9, 3], size: 3, strides: 2, pad: 'same' }, // overlapping windows and padding
    { x: [2, 7, 6, 2], size: 3, strides: 1, pad: 'same' },
    { x: [2, 8, 8, 3], size: [2, 3], strides: [2, 1], pad: 'valid' },
    { x: [2, 8, 8, 5], size: 2, strides: 2, pad: 'valid', quantise: 1 }, // many ties (values -1, 0, 1)
    { x: [2, 9, 9, 3], size: 3, strides: 2, pad: 'same', quantise: 1 }, // ties shared by overlapping windows
    { x: [2, 8, 8, 3], size: 2, strides: 2, pad: 'valid', shift: -2 }, // every value negative
  ];
  for (const [i, c] of cases.entries()) {
    const name = `x${c.x.join('x')} pool${c.size} s${c.strides} ${c.pad}${c.quantise ? ' ties' : ''}${c.shift ? ' negative' : ''}`;
    it(name, async () => {
      const xv = randomArray(sizeOf(c.x), 100 + i, c.quantise).map((v) => v + (c.shift ?? 0));
      const r = await both(() => {
        const x = tf.tensor4d(xv, c.x);
        const y = tf.maxPool(x, c.size, c.strides, c.pad);
        const weight = tf.tensor(randomArray(y.size, 110 + i), y.shape);
        return [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, c.size, c.strides, c.pad), weight)))(x)];
      });
      assertClose(r.wasm[0], r.cpu[0], 'dx');
    });
  }

  it('routes a tie to the first maximum and skips windows with no value above -Infinity', () => {
    // One 2x2 window per channel, channel 0: [[1, 1], [1, 0]], channel 1: all NaN.
    const x = new Float32Array([1, NaN, 1, NaN, 1, NaN, 0, NaN]);
    const info = tf.backend_util.computePool2DInfo([1, 2, 2, 2], 2, 2, 1, 'valid');
    const dx = new Float32Array(8);
    maxPoolGradInto(x, new Float32Array([5, 7]), dx, info);
    assert.deepEqual(Array.from(dx), [5, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('average-pool gradient on wasm matches cpu', () => {
  interface Case { x: Shape4; size: number | [number, number]; strides: number | [number, number]; pad: Pad }
  const cases: Case[] = [
    { x: [2, 8, 8, 3], size: 2, strides: 2, pad: 'valid' },
    { x: [3, 9, 7, 4], size: 2, strides: 2, pad: 'valid' },
    { x: [2, 7, 6, 2], size: 3, strides: 1, pad: 'same' }, // overlapping windows and padding
    { x: [2, 9, 9, 3], size: 3, strides: 2, pad: 'same' },
    { x: [2, 8, 8, 3], size: [2, 3], strides: [2, 1], pad: 'valid' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`x${c.x.join('x')} pool${c.size} s${c.strides} ${c.pad}`, async () => {
      const xv = randomArray(sizeOf(c.x), 150 + i);
      const r = await both(() => {
        const x = tf.tensor4d(xv, c.x);
        const y = tf.avgPool(x, c.size, c.strides, c.pad);
        const weight = tf.tensor(randomArray(y.size, 160 + i), y.shape);
        return [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.avgPool(a as tf.Tensor4D, c.size, c.strides, c.pad), weight)))(x)];
      });
      assertClose(r.wasm[0], r.cpu[0], 'dx');
    });
  }
});

describe('gather and sum on wasm match cpu', () => {
  const gathers: Array<{ x: number[]; axis: number; indices: number[]; dtype: 'float32' | 'int32' }> = [
    { x: [6, 4, 4, 3], axis: 0, indices: [5, 0, 2, 2], dtype: 'float32' }, // model.fit's batch slicing
    { x: [3, 5, 20], axis: 1, indices: [4, 1], dtype: 'float32' },
    { x: [5, 32], axis: 0, indices: [1, 3, 3], dtype: 'int32' },
    { x: [4, 6], axis: 1, indices: [5, 0], dtype: 'float32' }, // slices of 1: the original kernel
  ];
  for (const [i, c] of gathers.entries()) {
    it(`gather x${c.x.join('x')} axis ${c.axis} ${c.dtype}`, async () => {
      const xv = randomArray(sizeOf(c.x), 200 + i, c.dtype === 'int32' ? 100 : undefined);
      const r = await both(() => [tf.cast(tf.gather(tf.tensor(xv, c.x, c.dtype), tf.tensor1d(c.indices, 'int32'), c.axis), 'float32')]);
      assert.deepEqual(Array.from(r.wasm[0]), Array.from(r.cpu[0]));
    });
  }

  it('gather rejects an index out of range', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([3, 32]);
    assert.throws(() => tf.gather(x, tf.tensor1d([3], 'int32')), /index value 3 is not in \[0, 2\]/);
    x.dispose();
  });

  const sums: Array<{ x: number[]; axis: number | number[]; keepDims?: boolean; dtype?: 'int32' }> = [
    { x: [4, 7, 6, 5], axis: [0, 1, 2] }, // a conv's bias gradient
    { x: [9, 10], axis: 0 }, // a dense layer's bias gradient
    { x: [3, 4, 5], axis: [1, 0], keepDims: true },
    { x: [3, 4, 5], axis: [-3, -2] },
    { x: [3, 4, 5], axis: [0, 2] }, // not leading: the original kernel
    { x: [3, 4, 5], axis: [0, 1, 2] },
    { x: [6, 5], axis: 0, dtype: 'int32' },
  ];
  for (const [i, c] of sums.entries()) {
    it(`sum x${c.x.join('x')} axis ${JSON.stringify(c.axis)}${c.keepDims ? ' keepDims' : ''}${c.dtype ? ' ' + c.dtype : ''}`, async () => {
      const xv = randomArray(sizeOf(c.x), 300 + i, c.dtype ? 100 : undefined);
      const r = await both(() => {
        const y = tf.sum(tf.tensor(xv, c.x, c.dtype ?? 'float32'), c.axis, c.keepDims);
        return [tf.cast(y, 'float32'), tf.tensor1d(y.shape.length ? y.shape : [0])];
      });
      assertClose(r.wasm[0], r.cpu[0], 'sum');
      assert.deepEqual(Array.from(r.wasm[1]), Array.from(r.cpu[1]), 'output shape');
    });
  }
});
