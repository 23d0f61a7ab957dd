// What the .vsix carries, as `vsce ls` lists it from .vscodeignore: the
// bundles the runtime loads, the wasm binaries the engine can load in Node,
// media/, the manifest, README and LICENSE; no sources, tests, source maps or
// node_modules. Needs the bundles built (`npm run build`; `npm test` does).
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';

const root = path.resolve(__dirname, '../..');
// 20 MB before ONNX: the worker then took in onnxruntime-node's JavaScript and protobufjs (0.43 MB unminified).
const MAX_BYTES = 21 * 1024 * 1024;

function vsceLs(): string[] {
  const vsce = path.join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
  assert.ok(fs.existsSync(vsce), '@vscode/vsce is a devDependency: run `npm ci`');
  const r = spawnSync(process.execPath, [vsce, 'ls', '--no-dependencies'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `vsce ls failed:\n${r.stderr}${r.stdout}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Every "media/…" or "./media/…" path the manifest's contributions name (schemas, walkthrough pages, icons). */
function manifestMediaPaths(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') {
    const m = /^(?:\.\/)?(media\/.+)$/.exec(value);
    if (m) out.push(m[1]);
  } else if (Array.isArray(value)) {
    for (const v of value) manifestMediaPaths(v, out);
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) manifestMediaPaths(v, out);
  }
  return out;
}

describe('the packaged extension (.vscodeignore)', () => {
  let files: string[] = [];
  before(() => {
    for (const f of ['extension.js', 'worker.js', 'webview.js']) {
      assert.ok(fs.existsSync(path.join(root, 'dist', f)), `dist/${f} is missing: run \`npm run build\` first`);
    }
    files = vsceLs();
  });

  it('carries what the runtime loads', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { main: string; contributes: unknown };
    const needed = [
      'package.json',
      'README.md',
      'LICENSE',
      path.posix.normalize(manifest.main.replace(/^\.\//, '')),
      'dist/worker.js',
      // Data-parallel training's helper threads.
      'dist/trainHelper.js',
      // libhdf5 for Keras files, in its own thread.
      'dist/hdf5Helper.js',
      'dist/webview.js',
      // tfjs-backend-wasm in Node: the SIMD binary, or the plain one without SIMD.
      'dist/tfjs-backend-wasm-simd.wasm',
      'dist/tfjs-backend-wasm.wasm',
      // Layer Lens's SIMD training kernels (src/engine/kernels/assembly).
      'dist/layerlens-kernels.wasm',
      // ONNX Runtime for this platform: the N-API binding the bundled onnxruntime-node loads.
      `dist/onnxruntime/${process.platform}-${process.arch}/onnxruntime_binding.node`,
      ...manifestMediaPaths(manifest.contributes),
    ];
    for (const f of needed) assert.ok(files.includes(f), `${f} is not in the package (vsce ls: ${files.join(', ')})`);
  });

  it('carries no sources, tests, maps, dependencies or generated files', () => {
    const unwanted = files.filter(
      (f) =>
        /^(src|test|scripts|webview|node_modules|demo|\.cache|test-results|\.ci)\//.test(f) ||
        /\.(map|ts|tsx|vsix|log)$/.test(f) ||
        /^(tsconfig.*\.json|esbuild\.mjs|package-lock\.json|\.vscodeignore|\.gitignore)$/.test(f) ||
        // Not loaded by the extension: the CLI bundle, and the threaded wasm that Node never picks.
        f === 'dist/cli.js' ||
        f === 'dist/tfjs-backend-wasm-threaded-simd.wasm',
    );
    assert.deepEqual(unwanted, []);
  });

  it('carries one platform\'s ONNX Runtime: the binding and the library it links, nothing else', () => {
    const ort = files.filter((f) => f.startsWith('dist/onnxruntime/'));
    const dirs = new Set(ort.map((f) => f.split('/')[2]));
    assert.deepEqual([...dirs], [`${process.platform}-${process.arch}`]);
    assert.equal(ort.length, 2, ort.join(', '));
  });

  it(`is smaller than ${MAX_BYTES / 1024 / 1024} MB before compression, ONNX Runtime aside`, () => {
    const bytes = files.filter((f) => !f.startsWith('dist/onnxruntime/')).reduce((n, f) => n + fs.statSync(path.join(root, f)).size, 0);
    assert.ok(bytes < MAX_BYTES, `${(bytes / 1024 / 1024).toFixed(1)} MB in ${files.length} files`);
  });
});
