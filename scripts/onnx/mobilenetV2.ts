/**
 * MobileNetV2 (width 1.0, 224x224, 1,000 classes) written as ONNX by the
 * project's own writer, with seeded random weights and the graph PyTorch's
 * exporter makes of torchvision's model in eval mode: BatchNormalization
 * folded into each Conv's bias, ReLU6 as Clip(0, 6), depthwise convolutions
 * as Conv with group, residual Adds, GlobalAveragePool, Flatten, Gemm. For the
 * benchmarks: the architecture people fine-tune, without downloading one.
 */
import { Rng } from '../../src/engine/random';
import { GraphBuilder, attrs } from '../../src/engine/onnx/write';

export function mobilenetV2Onnx(seed = 1, classes = 1000): Uint8Array {
  const rng = new Rng(seed);
  const b = new GraphBuilder('mobilenet_v2');
  const randn = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rng.normal());
  const clip = [b.weight('relu6.min', new Float32Array([0]), []), b.weight('relu6.max', new Float32Array([6]), [])];
  let n = 0;
  /** Conv (+ folded BN bias), optionally followed by Clip(0, 6). */
  const conv = (x: string, cin: number, cout: number, k: number, stride: number, group: number, relu6: boolean): string => {
    const name = `conv${n++}`;
    const fanIn = (cin / group) * k * k;
    const w = b.weight(`${name}.weight`, randn(cout * (cin / group) * k * k, Math.sqrt(2 / fanIn)), [cout, cin / group, k, k]);
    const bias = b.weight(`${name}.bias`, randn(cout, 0.05), [cout]);
    const p = (k - 1) / 2;
    const y = b.node('Conv', name, [x, w, bias], [attrs.ints('kernel_shape', [k, k]), attrs.ints('strides', [stride, stride]), attrs.ints('pads', [p, p, p, p]), attrs.int('group', group)]);
    return relu6 ? b.node('Clip', `${name}_relu6`, [y, ...clip]) : y;
  };
  let x = conv(b.input('input', ['batch', 3, 224, 224]), 3, 32, 3, 2, 1, true);
  let c = 32;
  const settings: [number, number, number, number][] = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]];
  let blocks = 0;
  for (const [t, out, repeats, s] of settings) {
    for (let i = 0; i < repeats; i++) {
      const stride = i === 0 ? s : 1;
      const hidden = c * t;
      let y = t === 1 ? x : conv(x, c, hidden, 1, 1, 1, true);
      y = conv(y, hidden, hidden, 3, stride, hidden, true);
      y = conv(y, hidden, out, 1, 1, 1, false);
      x = stride === 1 && c === out ? b.node('Add', `block${blocks}_add`, [x, y]) : y;
      c = out;
      blocks++;
    }
  }
  x = conv(x, c, 1280, 1, 1, 1, true);
  x = b.node('GlobalAveragePool', 'pool', [x]);
  x = b.node('Flatten', 'flatten', [x], [attrs.int('axis', 1)]);
  const w = b.weight('classifier.weight', randn(classes * 1280, Math.sqrt(1 / 1280)), [classes, 1280]);
  x = b.node('Gemm', 'classifier', [x, w, b.weight('classifier.bias', new Float32Array(classes), [classes])], [attrs.int('transB', 1)]);
  b.output(x, ['batch', classes]);
  return b.bytes({ opset: 13, producer: 'Layer Lens benchmark (MobileNetV2 as PyTorch exports it)' });
}
