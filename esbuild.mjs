// One build for every bundle: the extension host, the compute worker and its
// training helper, the CLI (all Node, CommonJS) and the webview (browser,
// IIFE). The wasm binaries of @tensorflow/tfjs-backend-wasm are copied next
// to the bundles because, once bundled, the backend cannot find them by
// itself (see src/engine/backend.ts).
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildKernels } from './scripts/buildKernels.mjs';
import { copyOnnxRuntime, onnxRuntimeBinding } from './scripts/onnxRuntime.mjs';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');
// The platform whose ONNX Runtime binary goes into dist/ (and so into the
// .vsix): `--target=linux-x64` as vsce names targets; default this machine's.
const target = (process.argv.find((a) => a.startsWith('--target=')) ?? `--target=${process.platform}-${process.arch}`).slice('--target='.length);

const node = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  logLevel: 'info',
  // tfjs-node is optional: it is required at run time only if installed.
  // tsx/cjs is only resolved when running from the TypeScript sources (tests,
  // scripts): the helper threads load it there, never from a bundle.
  external: ['vscode', '@tensorflow/tfjs-node', 'tsx/cjs'],
  // Every Node bundle that reaches the engine's model loader can reach ONNX Runtime.
  plugins: [onnxRuntimeBinding],
};

const builds = [
  { ...node, entryPoints: { extension: 'src/extension.ts' }, outdir: 'dist' },
  { ...node, entryPoints: { worker: 'src/worker/worker.ts' }, outdir: 'dist' },
  // Data-parallel training's helper threads (src/engine/train/parallel.ts).
  { ...node, entryPoints: { trainHelper: 'src/worker/trainHelper.ts' }, outdir: 'dist' },
  // libhdf5 for the Keras reader, in a thread of its own (src/engine/io/hdf5.ts).
  { ...node, entryPoints: { hdf5Helper: 'src/worker/hdf5Helper.ts' }, outdir: 'dist' },
  { ...node, entryPoints: { cli: 'src/cli/main.ts' }, outdir: 'dist', banner: { js: '#!/usr/bin/env node' } },
  {
    bundle: true,
    platform: 'browser',
    target: 'chrome120',
    format: 'iife',
    sourcemap: !production,
    minify: production,
    logLevel: 'info',
    entryPoints: { webview: 'webview/main.ts' },
    outdir: 'dist',
  },
];

function copyWasm() {
  const from = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
  mkdirSync('dist', { recursive: true });
  for (const f of readdirSync(from)) {
    if (f.endsWith('.wasm')) copyFileSync(join(from, f), join('dist', f));
  }
}

copyWasm();
copyOnnxRuntime('dist', target);
// Layer Lens's own SIMD training kernels (src/engine/kernels/assembly).
await buildKernels(join('dist', 'layerlens-kernels.wasm'));
if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
