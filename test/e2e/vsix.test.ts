// The packaged extension as a user installs it: `vsce package` (the files
// .vscodeignore lets through, from the bundles in dist/), installed with
// code-server's --install-extension, then used: its commands are in the
// palette, and the Models view loads a model's layers, which runs the compute
// worker on the wasm binaries the .vsix carries.
// Needs `npm run build` and `bash scripts/e2e/setup.sh` first.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, cp, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ensureFixtures, fixture } from '../fixtures/models';
import { twinOnnx, twinTfjs } from '../fixtures/onnx';
import { extensionManifest } from './codeServer';
import { withSession } from './harness';
import { REPO_ROOT, waitUntil } from './util';
import { listCommands, openView, viewPane } from './workbench';

const temps: string[] = [];
after(async () => {
  await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** `vsce package` into a temp folder; the same flags as `npm run package`, without its production build. */
function packageVsix(dir: string): string {
  const m = extensionManifest();
  const out = path.join(dir, `${m.name}-${m.version}.vsix`);
  const vsce = path.join(REPO_ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
  const r = spawnSync(process.execPath, [vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--no-rewrite-relative-links', '-o', out], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 180_000,
  });
  assert.equal(r.status, 0, `vsce package failed:\n${r.stdout}\n${r.stderr}`);
  assert.ok(existsSync(out), `no ${out}`);
  return out;
}

test('the .vsix installs into code-server and works: commands in the palette, a model\'s layers in the Models view', { timeout: 420_000 }, async () => {
  assert.ok(existsSync(path.join(REPO_ROOT, 'dist', 'extension.js')), 'run `npm run build` first');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'layer-lens-vsix-'));
  temps.push(dir);
  const vsix = packageVsix(dir);
  await ensureFixtures();
  const ws = path.join(dir, 'ws');
  await cp(fixture('tiny-cnn'), path.join(ws, 'models', 'tiny-cnn'), { recursive: true });
  // An ONNX model: its nodes come from ONNX Runtime's binding as the .vsix carries it (dist/onnxruntime/<platform>-<arch>/).
  const tfjs = twinTfjs();
  await writeFile(path.join(ws, 'models', 'twin.onnx'), twinOnnx(tfjs));
  tfjs.dispose();

  await withSession('vsix', { workspace: ws, extension: vsix }, async (session) => {
    const { page } = session;
    // Installed from the .vsix: the extension's folder holds the packaged files only.
    const m = extensionManifest();
    const installed = (await readdir(session.extensionsDir)).find((d) => d.startsWith(`${m.publisher}.${m.name}-`));
    assert.ok(installed, `no ${m.publisher}.${m.name} in ${session.extensionsDir}`);
    const root = path.join(session.extensionsDir, installed);
    for (const f of ['package.json', 'dist/extension.js', 'dist/worker.js', 'dist/tfjs-backend-wasm-simd.wasm']) assert.ok(existsSync(path.join(root, f)), `${f} installed`);
    for (const f of ['src', 'test', 'node_modules', 'dist/cli.js']) assert.ok(!existsSync(path.join(root, f)), `${f} is not installed`);

    const titles = await listCommands(page, 'Layer Lens: Inspect Model');
    assert.ok(titles.includes('Layer Lens: Inspect Model'), `palette: ${JSON.stringify(titles)}`);

    // The Models view lists the model and, from the worker, its layers.
    await openView(page, 'Models');
    const pane = viewPane(page, 'Models');
    const model = pane.locator('.monaco-list-row[aria-level="1"]', { hasText: 'tiny-cnn' }).first();
    await model.waitFor({ state: 'visible', timeout: 90_000 });
    if ((await model.getAttribute('aria-expanded')) !== 'true') await model.locator('.monaco-tl-twistie').click();
    await waitUntil(
      'the layers of tiny-cnn in the Models view',
      async () => ((await pane.locator('.monaco-list-row[aria-level="2"]', { hasText: 'conv1' }).count()) > 0 ? true : undefined),
      90_000,
    );
    // The view is short: fold tiny-cnn so that the next model's row is drawn (the list renders visible rows only).
    await model.locator('.monaco-tl-twistie').click();
    const onnx = pane.locator('.monaco-list-row[aria-level="1"]', { hasText: 'twin.onnx' }).first();
    await onnx.waitFor({ state: 'visible', timeout: 90_000 });
    if ((await onnx.getAttribute('aria-expanded')) !== 'true') await onnx.locator('.monaco-tl-twistie').click();
    await waitUntil(
      'the nodes of twin.onnx in the Models view (ONNX Runtime loaded from the installed extension)',
      async () => ((await pane.locator('.monaco-list-row[aria-level="2"]', { hasText: 'Conv [?, 8, 32, 32]' }).count()) > 0 ? true : undefined),
      90_000,
    );
    for (const f of [`dist/onnxruntime/${process.platform}-${process.arch}/onnxruntime_binding.node`]) assert.ok(existsSync(path.join(root, f)), `${f} installed`);
  });
});
