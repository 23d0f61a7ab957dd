/**
 * Training kernels that @tensorflow/tfjs-backend-wasm lacks or runs slowly,
 * registered for the 'wasm' backend. Implemented in the sibling modules.
 *
 * Missing in tfjs-backend-wasm 4.22 (training a CNN fails with "Kernel
 * 'Conv2DBackpropFilter' not registered for backend 'wasm'"):
 *   Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter,
 *   DepthwiseConv2dNativeBackpropInput.
 * Present but slow in a training step, replaced (each keeps the original as
 * the fallback for cases it does not handle; setWasmKernelReplacements(false)
 * switches back to the originals wholesale):
 *   Conv2DBackpropInput (a scalar C++ loop; the XNNPACK conv replacing it is
 *   6-9x faster), MaxPoolGrad (4-5x faster, and it routes gradients the way
 *   tfjs's cpu kernel does, which the original does not; see maxPoolGrad.ts),
 *   AvgPoolGrad (the same slow pooling template; as a depthwise conv 3-8x
 *   faster), GatherV2 (batch slicing in model.fit; 30x) and Sum over leading
 *   axes (bias gradients; 2x), copies and reductions the originals do slowly.
 * Checked and left alone: the ReLU gradient (tfjs computes it as
 * mul(dy, step(x)), both XNNPACK ops on wasm) and FusedConv2D (tfjs unfuses
 * it while recording gradients, so its backward pass is the kernels above).
 * Where a step spends its time: scripts/benchTrain.ts --profile.
 */
// Imported for its side effect: tfjs-backend-wasm registers its kernels on
// import, and the replacements below must find them to keep as fallbacks.
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs';
import { conv2DBackpropFilterWasm, conv2DBackpropInputWasm } from './conv2dBackprop';
import { depthwiseConv2dNativeBackpropFilterWasm, depthwiseConv2dNativeBackpropInputWasm } from './depthwiseBackprop';
import { makeAvgPoolGradWasm } from './avgPoolGrad';
import { makeGatherV2Wasm } from './gatherV2';
import { makeMaxPoolGradWasm } from './maxPoolGrad';
import { makeSumWasm } from './sum';

const BACKEND = 'wasm';

/** Kernels tfjs-backend-wasm does not have; registered only while still absent. */
const MISSING: ReadonlyArray<[string, tf.KernelFunc]> = [
  [tf.Conv2DBackpropFilter, conv2DBackpropFilterWasm],
  [tf.DepthwiseConv2dNativeBackpropFilter, depthwiseConv2dNativeBackpropFilterWasm],
  [tf.DepthwiseConv2dNativeBackpropInput, depthwiseConv2dNativeBackpropInputWasm],
];

/** Kernels replaced; each factory gets the original kernelFunc as fallback. */
const REPLACED: ReadonlyArray<[string, (original: tf.KernelFunc | undefined) => tf.KernelFunc]> = [
  [tf.Conv2DBackpropInput, () => conv2DBackpropInputWasm],
  [tf.MaxPoolGrad, makeMaxPoolGradWasm],
  [tf.AvgPoolGrad, makeAvgPoolGradWasm],
  [tf.GatherV2, makeGatherV2Wasm],
  [tf.Sum, makeSumWasm],
];

/** Names of the kernels this module replaces (for the benchmark's report). */
export const REPLACED_KERNELS: readonly string[] = REPLACED.map(([name]) => name);

let replacementsInstalled = false;
let enabledReplacements = new Set<string>(REPLACED_KERNELS);

/**
 * Chooses, at run time, which replaced kernels use our implementation: `true`
 * (the default) all of them, `false` none (tfjs-backend-wasm's originals
 * throughout), or the names listed. Lets a benchmark compare them in one
 * process. The missing kernels have no original and are unaffected.
 */
export function setWasmKernelReplacements(enabled: boolean | Iterable<string>): void {
  if (enabled === true) enabledReplacements = new Set(REPLACED_KERNELS);
  else if (enabled === false) enabledReplacements = new Set();
  else enabledReplacements = new Set(enabled);
}

/** tfjs types getKernel as always returning a config; it returns undefined when absent. */
function findKernel(name: string): tf.KernelConfig | undefined {
  return tf.getKernel(name, BACKEND) as tf.KernelConfig | undefined;
}

/**
 * Registers the kernels for the 'wasm' backend. Safe to call more than once,
 * and before or after the backend is initialised: a replacement reuses the
 * original's setupFunc, which tfjs runs each time the backend is set, so the
 * original stays usable as the fallback.
 */
export function registerWasmTrainingKernels(): void {
  for (const [kernelName, kernelFunc] of MISSING) {
    if (!findKernel(kernelName)) tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
  if (replacementsInstalled) return;
  replacementsInstalled = true;
  for (const [kernelName, make] of REPLACED) {
    const original = findKernel(kernelName);
    if (original) tf.unregisterKernel(kernelName, BACKEND);
    const ours = make(original?.kernelFunc);
    const originalFunc = original?.kernelFunc;
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: originalFunc ? (args) => (enabledReplacements.has(kernelName) ? ours(args) : originalFunc(args)) : ours,
      setupFunc: original?.setupFunc,
      disposeFunc: original?.disposeFunc,
    });
  }
}
