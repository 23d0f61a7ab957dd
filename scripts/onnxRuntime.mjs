// ONNX Runtime in the bundles: onnxruntime-node's JavaScript is bundled, its
// native binding is loaded from dist/onnxruntime/<platform>-<arch>/. Used by
// esbuild.mjs and by the tests that build the bundles themselves
// (test/fixtures/bundles.ts).
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * ONNX Runtime (onnxruntime-node) is bundled into the worker and the CLI,
 * except its native binding, which it loads from
 * `../bin/napi-v6/<platform>/<arch>/`. Once bundled, that path would point
 * into node_modules; it is rewritten to `dist/onnxruntime/<platform>-<arch>/`,
 * where copyOnnxRuntime puts the binding and the runtime library it links.
 */
export const onnxRuntimeBinding = {
  name: 'onnxruntime-binding',
  setup(build) {
    build.onLoad({ filter: /onnxruntime-node[\\/]dist[\\/]binding\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const from = /require\(`\.\.\/bin\/napi-v6\/\$\{process\.platform\}\/\$\{process\.arch\}\/onnxruntime_binding\.node`\)/;
      if (!from.test(text)) throw new Error(`onnxruntime-node changed how it loads its binding (${args.path}); update esbuild.mjs`);
      const to = "require(require('node:path').join(__dirname, 'onnxruntime', process.platform + '-' + process.arch, 'onnxruntime_binding.node'))";
      return { contents: text.replace(from, to), loader: 'js' };
    });
  },
};

/** The files of one platform's ONNX Runtime that the CPU build loads: the N-API binding and the runtime library it links. */
export const ORT_FILES = {
  linux: ['onnxruntime_binding.node', 'libonnxruntime.so.1'],
  darwin: ['onnxruntime_binding.node', 'libonnxruntime.1.dylib'],
  // DirectML.dll is delay-loaded (the DirectML execution provider only), dxcompiler/dxil serve WebGPU.
  win32: ['onnxruntime_binding.node', 'onnxruntime.dll'],
};

export function copyOnnxRuntime(dist, target = `${process.platform}-${process.arch}`) {
  const [platform, arch] = target.split('-');
  const from = join(root, 'node_modules/onnxruntime-node/bin/napi-v6', platform, arch);
  const files = ORT_FILES[platform];
  if (!files || !existsSync(from)) throw new Error(`onnxruntime-node has no binary for ${target} (looked in ${from})`);
  rmSync(join(dist, 'onnxruntime'), { recursive: true, force: true });
  const to = join(dist, 'onnxruntime', target);
  mkdirSync(to, { recursive: true });
  for (const f of files) copyFileSync(join(from, f), join(to, f));
}
