/**
 * Containment: what a hostile file can do to the editor, the disk and the
 * files around the model.
 *
 * - The worker: loading runs in the compute worker (EngineClient starts
 *   worker.js); if it dies (out of memory, an uncaught error, process.exit)
 *   every call in flight fails with a clear message and the next request
 *   starts a fresh worker; a load that takes too long is cut off and the
 *   worker replaced. Crashes and hangs that no input provokes any more (the
 *   fuzzer's finds are fixed) are provoked by a test-only wrapper around the
 *   real worker.js, selected by the model path.
 * - Nothing lost: a fine-tune killed at random moments (during the final save
 *   too) leaves no output folder or a complete one, the source model byte for
 *   byte, and at most `.layerlens-tmp-*` leftovers that the next write
 *   removes; a recipe write killed mid-write leaves the old file or the new.
 * - The folder boundary: every file the loader touches, recorded, for each
 *   path trick.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeFolderAtomic } from '../../src/engine/io/atomic';
import { disposeModel, loadModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { serializeRecipe } from '../../src/engine/recipe';
import { EngineClient } from '../../src/engineClient';
import { defaultRecipe } from '../../src/protocol/recipe';
import { RemoteError } from '../../src/protocol/rpc';
import { currentBundles } from '../fixtures/bundles';
import { makeHostileModels, repoRoot, writeWideModel, type HostileModels } from '../fixtures/hostile';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-containment-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const crashed = (code: number) => `The compute worker stopped unexpectedly (exit code ${code}; out of memory or a crash). Try again; a fresh worker will start.`;

/**
 * A worker.js that is the real one, plus four ways to die chosen by the
 * model path of a loadModel request: process.exit, an uncaught throw, a
 * synchronous endless loop, and a heap filled until the worker runs out. The wasm binaries are linked in beside it.
 */
function wrapperDist(real: string): string {
  const dir = path.join(root, 'wrapper-dist');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(real)) if (f.endsWith('.wasm')) fs.symlinkSync(path.join(real, f), path.join(dir, f));
  fs.writeFileSync(
    path.join(dir, 'worker.js'),
    `const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  const p = m && m.kind === 'request' && m.method === 'loadModel' ? String(m.params.path) : '';
  if (p.includes('die-exit')) process.exit(7);
  if (p.includes('die-throw')) throw new Error('boom from a test');
  if (p.includes('die-hang')) for (;;) {}
  if (p.includes('die-oom')) {
    const hold = [];
    for (;;) {
      const a = [];
      for (let i = 0; i < 1000; i++) a.push({ i });
      hold.push(a);
    }
  }
});
require(${JSON.stringify(path.join(real, 'worker.js'))});
`,
  );
  return dir;
}

function client(distDir: string, extra: Partial<ConstructorParameters<typeof EngineClient>[0]> = {}): { engine: EngineClient; logs: string[] } {
  const logs: string[] = [];
  const engine = new EngineClient({
    distDir,
    backend: () => 'wasm',
    log: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    cancelGraceMs: 500,
    ...extra,
  });
  return { engine, logs };
}

async function rejectsRemote(p: Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RemoteError, `expected a RemoteError, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

describe('the compute worker contains crashes and hangs', () => {
  let real = '';
  let wrapped = '';
  const engines: EngineClient[] = [];
  before(async () => {
    await setup();
    real = await currentBundles();
    wrapped = wrapperDist(real);
  });
  after(() => engines.forEach((e) => e.dispose()));
  const good = () => fixture('tiny-cnn', 'model.json');

  for (const [how, token, code] of [
    ['process.exit inside the worker', 'die-exit', 7],
    ['an uncaught error inside the worker', 'die-throw', 1],
  ] as const) {
    it(`${how}: every call in flight fails with a clear message, and the next request gets a fresh worker`, { timeout: 60_000 }, async () => {
      const { engine, logs } = client(wrapped);
      engines.push(engine);
      assert.equal((await engine.call('loadModel', { path: good() })).totalParams, 451);
      const dying = engine.call('loadModel', { path: path.join(root, token, 'model.json') });
      const queued = engine.call('memory', {});
      await rejectsRemote(dying, 'worker-exit', crashed(code));
      await rejectsRemote(queued, 'worker-exit', crashed(code));
      assert.equal(engine.started, false);
      assert.ok(logs.includes(`The compute worker stopped unexpectedly (exit code ${code}; out of memory or a crash); a fresh one starts with the next request.`), logs.join('\n'));
      assert.equal((await engine.call('loadModel', { path: good() })).totalParams, 451);
      assert.equal(engine.started, true);
    });
  }

  // The worker's heap fills the way a real leak or an oversized computation
  // fills it, small objects at a time, so V8 reaches its heap limit and Node
  // ends the worker alone. (A single huge allocation inside JSON.parse can
  // end the whole process under Node 20 instead, which is why the loader
  // bounds what JSON.parse may build: the heap-bomb case of hostile.test.ts.)
  it('out of memory (the heap limit lowered to 512 MB): the worker dies, not the editor; the next request gets a fresh one', { timeout: 60_000 }, async () => {
    const { engine, logs } = client(wrapped, { maxHeapMb: 512 });
    engines.push(engine);
    assert.equal((await engine.call('loadModel', { path: good() })).totalParams, 451);
    const dying = engine.call('loadModel', { path: path.join(root, 'die-oom', 'model.json') });
    const queued = engine.call('memory', {});
    await rejectsRemote(dying, 'worker-exit', crashed(1));
    await rejectsRemote(queued, 'worker-exit', crashed(1));
    assert.ok(logs.some((l) => /out of memory/i.test(l)), logs.join('\n'));
    assert.equal((await engine.call('loadModel', { path: good() })).totalParams, 451);
  });

  it('a load that hangs is cut off at its time limit: the user gets the message, the worker is replaced, other calls fail, the next works', { timeout: 60_000 }, async () => {
    const { engine, logs } = client(wrapped);
    engines.push(engine);
    await engine.backend();
    const hanging = path.join(root, 'die-hang', 'model.json');
    const message = `Loading die-hang/model.json took longer than 2 s; the compute worker was restarted. The file may be damaged or far larger than a model needs; if it is a real model, raise the setting layerLens.loadTimeoutSeconds.`;
    const load = engine.call('loadModel', { path: hanging }, { timeoutMs: 2000, timeoutMessage: message });
    const behind = engine.call('memory', {});
    await rejectsRemote(load, 'timeout', message);
    await rejectsRemote(behind, 'cancelled', 'The compute worker was restarted.');
    assert.ok(logs.includes('The compute worker did not finish loadModel within 2 s; restarting it.'), logs.join('\n'));
    assert.equal((await engine.call('loadModel', { path: good() }, { timeoutMs: 30_000 })).totalParams, 451);
  });

  it('a load that finishes in time is not affected by its time limit', { timeout: 60_000 }, async () => {
    const { engine } = client(real);
    engines.push(engine);
    const summary = await engine.call('loadModel', { path: good() }, { timeoutMs: 30_000, timeoutMessage: 'never shown' });
    assert.equal(summary.totalParams, 451);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(engine.started, true);
  });

  it('NaN/Inf warnings reach the host with the summary', { timeout: 60_000 }, async () => {
    const h = makeHostileModels(path.join(root, 'worker-models'));
    const { engine } = client(real);
    engines.push(engine);
    const summary = await engine.call('loadModel', { path: h.models['nan-inf'] });
    assert.deepEqual(summary.warnings, ['weight "conv1/kernel" holds 1 NaN and 1 infinite values of 108', 'weight "bn1/gamma" holds 0 NaN and 1 infinite values of 4']);
  });
});

// ---------------------------------------------------------------------------

/** The files a fine-tune writes: the shards its model.json lists, and the three reports. */
function expectedFiles(out: string): string[] {
  const j = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  return [...j.weightsManifest.flatMap((g) => g.paths), 'metadata.json', 'metrics.csv', 'metrics.json', 'model.json'].sort();
}

function hashFolder(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) out[f] = createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex');
  return out;
}

interface KillRun {
  /** ms after spawn, or "at save" (killed as the temporary output folder appeared). */
  when: string;
  outcome: 'no output' | 'complete output';
  leftovers: number;
}

describe('nothing is lost when a fine-tune is killed', () => {
  let cli = '';
  let model = '';
  let data = '';
  let sourceHash: Record<string, string> = {};
  const runs: KillRun[] = [];
  before(async () => {
    await setup();
    cli = path.join(await currentBundles(), 'cli.js');
    model = await writeWideModel(path.join(root, 'kill', 'source'));
    data = makeStripesDataset(path.join(root, 'kill', 'data'), { perClass: 6 });
    sourceHash = hashFolder(path.dirname(model));
  });

  /** Starts `layer-lens finetune` writing to `out`; resolves when it exits. */
  function start(out: string): { child: ChildProcess; done: Promise<number | null> } {
    const child = spawn(process.execPath, [cli, 'finetune', model, data, '--epochs', '2', '--out', out, '--backend', 'wasm'], { cwd: repoRoot, stdio: 'ignore' });
    const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, done };
  }

  /** What a kill left in `parent`: no output or a complete, loadable one, plus leftovers of the temporary folder only. */
  async function check(out: string): Promise<{ outcome: KillRun['outcome']; leftovers: string[] }> {
    const parent = path.dirname(out);
    const name = path.basename(out);
    const entries = fs.readdirSync(parent);
    const leftovers = entries.filter((e) => e.startsWith(`${name}.layerlens-tmp-`));
    const other = entries.filter((e) => e !== name && !leftovers.includes(e));
    assert.deepEqual(other, [], 'nothing but the output folder and its temporary folders');
    assert.deepEqual(hashFolder(path.dirname(model)), sourceHash, 'the source model is byte-identical');
    if (!entries.includes(name)) return { outcome: 'no output', leftovers };
    assert.deepEqual(fs.readdirSync(out).sort(), expectedFiles(out), 'every file of the output folder, nothing half-written');
    JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8'));
    JSON.parse(fs.readFileSync(path.join(out, 'metadata.json'), 'utf8'));
    const loaded = await loadModel(path.join(out, 'model.json'));
    assert.equal(loaded.summary.layers.length, 3);
    disposeModel(loaded);
    return { outcome: 'complete output', leftovers };
  }

  it('a run that is not killed writes the complete folder (the baseline for the kills)', { timeout: 60_000 }, async () => {
    const out = path.join(root, 'kill', 'baseline', 'out');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const started = performance.now();
    assert.equal(await start(out).done, 0);
    const r = await check(out);
    assert.deepEqual(r, { outcome: 'complete output', leftovers: [] });
    runs.push({ when: `not killed (${Math.round(performance.now() - started)} ms)`, ...r, leftovers: 0 });
  });

  it('killed at random moments: no output or a complete one, the source intact, only temporary leftovers', { timeout: 90_000 }, async () => {
    const full = parseInt(/\((\d+) ms\)/.exec(runs[0]?.when ?? '')?.[1] ?? '1500', 10);
    const rng = new Rng(424242);
    for (let k = 0; k < 4; k++) {
      const out = path.join(root, 'kill', `random${k}`, 'out');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const delay = Math.round(rng.uniform(0.15, 1.05) * full);
      const run = start(out);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), delay);
      await run.done;
      clearTimeout(timer);
      const r = await check(out);
      runs.push({ when: `${delay} ms`, outcome: r.outcome, leftovers: r.leftovers.length });
    }
  });

  it('killed during the final save (as its temporary folder appears, and a little later): the same', { timeout: 90_000 }, async () => {
    for (const lag of [0, 1, 3, 8, 300]) {
      const out = path.join(root, 'kill', `save${runs.length}`, 'out');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const run = start(out);
      const watcher = fs.watch(path.dirname(out), (_event, file) => {
        if (!String(file).startsWith('out.layerlens-tmp-')) return;
        watcher.close();
        if (lag === 0) run.child.kill('SIGKILL');
        else setTimeout(() => run.child.kill('SIGKILL'), lag);
      });
      await run.done;
      watcher.close();
      const r = await check(out);
      runs.push({ when: `at save +${lag} ms`, outcome: r.outcome, leftovers: r.leftovers.length });
      // The next write of the same folder cleans the leftovers up.
      if (r.outcome === 'no output' && r.leftovers.length > 0) {
        await writeFolderAtomic(out, async (tmp) => fs.writeFileSync(path.join(tmp, 'x'), 'x'));
        assert.deepEqual(fs.readdirSync(path.dirname(out)), ['out']);
      }
    }
  });

  it('reports what the kills left', (t) => {
    for (const r of runs) t.diagnostic(`${r.when}: ${r.outcome}${r.leftovers ? `, ${r.leftovers} temporary folder left` : ''}`);
    assert.ok(runs.length >= 10);
  });
});

// ---------------------------------------------------------------------------

describe('nothing is lost when a recipe write is killed', () => {
  before(setup);

  it('the file is the old recipe or the new one, never a torn one; the next write removes the leftovers', { timeout: 60_000 }, async (t) => {
    const a = { ...defaultRecipe(), freeze: ['conv1'] };
    const b = { ...defaultRecipe(), freeze: Array.from({ length: 2000 }, (_, i) => `layer_${i}`) };
    const texts = [serializeRecipe(a), serializeRecipe(b)];
    const script = path.join(root, 'recipe-writer.ts');
    fs.writeFileSync(
      script,
      `import { writeRecipe } from ${JSON.stringify(path.join(repoRoot, 'src/engine/recipe.ts'))};
const [model, a, b] = [process.argv[2], JSON.parse(process.argv[3]), JSON.parse(process.argv[4])];
(async () => {
  await writeRecipe(model, a);
  process.stdout.write('ready\\n');
  for (let i = 0; ; i++) await writeRecipe(model, i % 2 ? a : b);
})();
`,
    );
    const kills = [5, 20, 45, 80];
    const outcomes = await Promise.all(
      kills.map(async (ms, k) => {
        const dir = path.join(root, 'recipe-kill', String(k));
        fs.mkdirSync(dir, { recursive: true });
        const model = path.join(dir, 'model.json');
        const child = spawn(process.execPath, ['--import', 'tsx', script, model, JSON.stringify(a), JSON.stringify(b)], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
        const exited = new Promise((r) => child.on('exit', r));
        await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
        await new Promise((r) => setTimeout(r, ms));
        child.kill('SIGKILL');
        await exited;
        const text = fs.readFileSync(path.join(dir, 'layerlens.json'), 'utf8');
        assert.ok(texts.includes(text), `torn layerlens.json after a kill at ${ms} ms: ${text.slice(0, 80)}…`);
        const leftovers = fs.readdirSync(dir).filter((f) => f !== 'layerlens.json');
        assert.ok(leftovers.every((f) => f.startsWith('layerlens.json.layerlens-tmp-')), leftovers.join(', '));
        return { ms, which: texts.indexOf(text) === 0 ? 'a' : 'b', leftovers: leftovers.length, dir, model };
      }),
    );
    const { writeRecipe } = await import('../../src/engine/recipe');
    for (const o of outcomes) {
      t.diagnostic(`killed after ${o.ms} ms: recipe ${o.which}, ${o.leftovers} temporary file(s)`);
      await writeRecipe(o.model, o.which === 'a' ? b : a);
      assert.deepEqual(fs.readdirSync(o.dir), ['layerlens.json']);
    }
  });
});

// ---------------------------------------------------------------------------

/**
 * Every path handed to a file-system call while `fn` runs: fs.promises, the
 * callback API and the sync API, looked up at call time as the engine does.
 */
async function recordFsCalls(fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  // The module object itself (an `import * as` namespace only has getters onto it).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const real = require('node:fs') as typeof fs;
  const promises = real.promises as unknown as Record<string, (...a: unknown[]) => unknown>;
  const sync = real as unknown as Record<string, (...a: unknown[]) => unknown>;
  const asyncNames = ['readFile', 'open', 'stat', 'lstat', 'realpath', 'access', 'readdir', 'opendir', 'readlink', 'statfs'];
  const syncNames = ['readFileSync', 'openSync', 'statSync', 'lstatSync', 'realpathSync', 'accessSync', 'existsSync', 'readdirSync', 'readlinkSync', 'readFile', 'open', 'stat', 'lstat', 'realpath', 'access', 'readdir'];
  const restore: (() => void)[] = [];
  const wrap = (obj: Record<string, (...a: unknown[]) => unknown>, name: string, label: string) => {
    const original = obj[name];
    if (typeof original !== 'function') return;
    obj[name] = function (this: unknown, ...args: unknown[]) {
      seen.push(`${label} ${String(args[0])}`);
      return original.apply(this, args);
    };
    Object.assign(obj[name], original); // realpathSync.native and the like
    restore.push(() => (obj[name] = original));
  };
  for (const n of asyncNames) wrap(promises, n, `promises.${n}`);
  for (const n of syncNames) wrap(sync, n, n);
  try {
    await fn().catch(() => undefined);
  } finally {
    for (const r of restore.reverse()) r();
  }
  return seen;
}

describe('the model folder boundary, proven by recording every file the loader touches', () => {
  let h: HostileModels;
  before(async () => {
    await setup();
    h = makeHostileModels(path.join(root, 'boundary'));
    // A model folder that is itself a symlink to a real folder elsewhere, whose manifest escapes with "..".
    fs.cpSync(path.join(h.root, 'path-dotdot'), path.join(root, 'elsewhere', 'real'), { recursive: true });
    fs.symlinkSync(path.join(root, 'elsewhere', 'real'), path.join(h.root, 'linked-folder'));
    // And one that links to a good model.
    fs.cpSync(fixture('tiny-cnn'), path.join(root, 'elsewhere', 'good'), { recursive: true });
    fs.symlinkSync(path.join(root, 'elsewhere', 'good'), path.join(h.root, 'linked-good'));
  });

  it('metadata.json and labels.txt that link out of the folder: the model loads, without their labels, and they are not read', async () => {
    const dir = path.join(root, 'boundary-meta', 'model');
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['model.json', 'weights.bin']) fs.copyFileSync(fixture('tiny-cnn', f), path.join(dir, f));
    fs.writeFileSync(path.join(root, 'boundary-meta', 'secret-labels.json'), JSON.stringify({ labels: ['secret', 'labels', 'here'] }));
    fs.symlinkSync(path.join(root, 'boundary-meta', 'secret-labels.json'), path.join(dir, 'metadata.json'));
    fs.symlinkSync('/etc/passwd', path.join(dir, 'labels.txt'));
    let loaded: Awaited<ReturnType<typeof loadModel>> | undefined;
    const calls = await recordFsCalls(async () => (loaded = await loadModel(path.join(dir, 'model.json'))));
    assert.ok(loaded, 'it loaded');
    assert.equal(loaded.summary.labels, undefined);
    disposeModel(loaded);
    const outside = calls.filter((c) => !path.resolve(c.slice(c.indexOf(' ') + 1)).startsWith(dir + path.sep));
    assert.deepEqual(outside, []);
    assert.ok(!calls.some((c) => /^(promises\.)?(readFile|open)/.test(c) && /metadata\.json|labels\.txt/.test(c)), calls.join('\n'));
  });

  it('a model folder that is a symlink to a good model: loads, touching only the link and its target', async (t) => {
    const modelJson = path.join(h.root, 'linked-good', 'model.json');
    let loaded: Awaited<ReturnType<typeof loadModel>> | undefined;
    const calls = await recordFsCalls(async () => (loaded = await loadModel(modelJson)));
    assert.ok(loaded, 'it loaded');
    disposeModel(loaded);
    const folders = [path.dirname(modelJson), path.join(root, 'elsewhere', 'good')];
    const outside = calls.filter((c) => {
      const p = path.resolve(c.slice(c.indexOf(' ') + 1));
      return !folders.some((f) => p === f || p.startsWith(f + path.sep));
    });
    assert.deepEqual(outside, []);
    assert.ok(calls.some((c) => /^promises\.(readFile|open) /.test(c) && c.endsWith(path.join('good', 'weights.bin'))), calls.join('\n'));
    t.diagnostic(`${calls.length} file-system calls, all inside: ${[...new Set(calls.map((c) => c.split(' ')[0]))].join(', ')}`);
  });

  const tricks: [string, (h: HostileModels) => string, RegExp][] = [
    ['".." in the weights path', (h) => h.models['path-dotdot'], /leaves the model folder/],
    ['an absolute weights path', (h) => h.models['path-absolute'], /is absolute/],
    ['a weights file that is a symlink out of the folder', (h) => h.models['path-symlink'], /is a symlink to/],
    ['a model folder that is a symlink (the manifest says ../outside.bin)', (h) => path.join(h.root, 'linked-folder', 'model.json'), /leaves the model folder/],
    ['a model folder in a symlink loop', (h) => h.models['folder-symlink-loop'], /symlink loop/],
    ['a URL-like path (file:///etc/passwd)', (h) => h.models['path-url'], /is a URL/],
    ['a Windows-style path (..\\..\\outside.bin)', (h) => h.models['path-windows'], /leaves the model folder/],
    ['a percent-encoded path (%2e%2e/outside.bin), taken literally', (h) => h.models['path-percent'], /%2e%2e\/outside\.bin is missing next to/],
  ];

  for (const [what, file, message] of tricks) {
    it(`${what}: refused, and nothing outside the folder is touched`, async (t) => {
      const modelJson = file(h);
      await assert.rejects(loadModel(modelJson), message);
      const calls = await recordFsCalls(() => loadModel(modelJson));
      const given = path.dirname(modelJson);
      let real = given;
      try {
        real = fs.realpathSync(given);
      } catch {
        // The loop: it has no real path.
      }
      // Normalised first: "folder/../x" is not inside the folder, whatever the string starts with.
      const pathOf = (c: string) => path.resolve(c.slice(c.indexOf(' ') + 1));
      const inside = (p: string) => [given, real].some((f) => p === f || p.startsWith(f + path.sep));
      assert.ok(calls.length > 0, 'the recorder saw the loader');
      const outside = calls.filter((c) => !inside(pathOf(c)));
      assert.deepEqual(outside, [], `touched outside ${given}:\n${outside.join('\n')}`);
      const targets = [h.outside, fs.realpathSync(h.outside), '/etc/passwd'];
      assert.deepEqual(calls.filter((c) => targets.includes(pathOf(c))), [], 'the files the tricks aim at are never named to the file system');
      t.diagnostic(`${calls.length} file-system calls: ${calls.map((c) => c.replace(root, '…')).join('; ')}`);
    });
  }
});
