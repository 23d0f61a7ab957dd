/**
 * Issue 15, first half: nothing overwritten, nothing written outside, no
 * finished run lost. Each case of the adversarial round by name, and cases of
 * the same classes that the round did not try. The mechanisms under test:
 * io/output.ts (an output never replaces a file the run did not create unless
 * forced, never a model's own; every place checked before the work; result
 * folders named at save time), io/ownDir.ts (caches only in real folders of
 * the model's), io/atomic.ts (temporary names cleaned on every exit path and
 * swept when stale), io/fallbackDir.ts (where a run goes when its place
 * cannot be written). Read-only folders and full disks are real ones, made in
 * a private mount namespace when the machine allows it (skipped otherwise).
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { computeEmbeddings } from '../../src/engine/embed/compute';
import { sweepStaleTemps, writeFolderAtomic } from '../../src/engine/io/atomic';
import { setFallbackRoot } from '../../src/engine/io/fallbackDir';
import { prepareOutputFile, writeOutputFile } from '../../src/engine/io/output';
import { disposeModel, loadModel } from '../../src/engine/model';
import { finetune } from '../../src/engine/train/finetune';
import type { TrainProgress } from '../../src/protocol/train';
import { currentBundles } from '../fixtures/bundles';
import { canUseMountNamespace, inMountNamespace, sh, twoClassDataset } from '../fixtures/hostileFaults';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';
import { hashTree, refuses, root, runCli, hangLimit } from './hostileHelpers';

const at = (...p: string[]) => path.join(root, 'writes', ...p);
/** A fresh copy of the tiny CNN's folder. */
function modelCopy(name: string): string {
  const dir = at(name);
  fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

const fallback = at('fallback-storage');
let cli = '';
let data = '';
const ns = canUseMountNamespace();
const nsSkip = ns ? false : 'no private mount namespace on this machine (needs root or user namespaces)';

before(async () => {
  await setup();
  fs.mkdirSync(at(), { recursive: true });
  setFallbackRoot(fallback);
  cli = path.join(await currentBundles(), 'cli.js');
  data = makeStripesDataset(at('data'), { perClass: 4, jpegEvery: 0 });
});

const cliEnv = () => ({ LAYER_LENS_CACHE: fallback });

describe('an output never replaces a file the run did not create, nor a model file (issue 15)', () => {
  it('embed --map pca --out <model>/model.json: refused before computing; model.json byte-identical', async () => {
    const model = modelCopy('embed-out-model');
    const before = hashTree(path.dirname(model));
    const r = await runCli(cli, ['embed', model, data, '--map', 'pca', '--out', model, '--force'], undefined, { env: cliEnv() });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `layer-lens: --out ${model}: model.json is a model's own file, which Layer Lens never replaces; choose another name.\n`);
    assert.equal(r.stdout, '', 'refused before any embedding was computed');
    assert.deepEqual(hashTree(path.dirname(model)), before);
  });

  it('embed --tsv <dir> holding vectors.tsv: refused; with --force replaced (and metadata.tsv written)', async () => {
    const model = modelCopy('embed-tsv');
    const dir = at('tsv');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'vectors.tsv'), 'mine\n');
    const r = await runCli(cli, ['embed', model, data, '--tsv', dir], undefined, { env: cliEnv() });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `layer-lens: --tsv ${dir} already holds vectors.tsv (from an earlier run?); Layer Lens does not replace files it did not write in this run. Pass --force to replace them, or choose another folder.\n`);
    assert.equal(fs.readFileSync(path.join(dir, 'vectors.tsv'), 'utf8'), 'mine\n');
    assert.deepEqual(fs.readdirSync(dir), ['vectors.tsv']);
    const forced = await runCli(cli, ['embed', model, data, '--tsv', dir, '--force'], undefined, { env: cliEnv() });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(fs.readFileSync(path.join(dir, 'vectors.tsv'), 'utf8').split('\n').length, 12 + 1);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['metadata.tsv', 'vectors.tsv']);
  });

  it('inspect --out <the model folder> holding the user\'s summary.json: refused; with --force, summary.json replaced and the model files untouched', async () => {
    const model = modelCopy('inspect-into-model');
    const dir = path.dirname(model);
    fs.writeFileSync(path.join(dir, 'summary.json'), '{"mine": true}\n');
    const before = hashTree(dir);
    const image = path.join(data, 'checker', 'checker-000.png');
    const r = await runCli(cli, ['inspect', model, '--image', image, '--out', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^layer-lens: --out .* already holds summary\.json \(from an earlier run\?\); Layer Lens does not replace files it did not write in this run\. Pass --force/);
    assert.deepEqual(hashTree(dir), before);
    const forced = await runCli(cli, ['inspect', model, '--image', image, '--out', dir, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    const after = hashTree(dir);
    for (const f of ['model.json', 'weights.bin', 'metadata.json']) assert.equal(after[f], before[f], `${f} untouched`);
    assert.notEqual(after['summary.json'], before['summary.json']);
  });

  it('compare --out holding a drift.json: refused before loading anything', async () => {
    const out = at('compare-out');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'drift.json'), 'mine');
    const m = fixture('tiny-cnn', 'model.json');
    const r = await runCli(cli, ['compare', m, m, '--image', path.join(data, 'checker', 'checker-000.png'), '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already holds drift\.json/);
    assert.equal(fs.readFileSync(path.join(out, 'drift.json'), 'utf8'), 'mine');
  });

  it('a file that appears between the check and the write is not replaced (the write links, it does not rename over)', async () => {
    const target = at('race', 'map.json');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    await prepareOutputFile(target, { flag: '--out' });
    fs.writeFileSync(target, 'theirs');
    await refuses(writeOutputFile(target, 'ours', { flag: '--out' }), 'output-exists', `--out ${target} appeared while Layer Lens worked; it was not replaced. Pass --force to replace it, or choose another name.`);
    assert.equal(fs.readFileSync(target, 'utf8'), 'theirs');
    assert.deepEqual(fs.readdirSync(path.dirname(target)), ['map.json'], 'no temporary file left');
  });

  it("a model's own file is never replaced, --force or not: by name, and by inode (a hard link to a loaded model's shard under another name)", async () => {
    const model = modelCopy('own-files');
    const loaded = await loadModel(model);
    disposeModel(loaded);
    const link = at('own-files-elsewhere.dat');
    fs.linkSync(path.join(path.dirname(model), 'weights.bin'), link);
    const before = fs.readFileSync(link);
    await refuses(writeOutputFile(link, 'x', { force: true }), 'output-exists', `${link}: it is weights.bin of a model Layer Lens has open, which Layer Lens never replaces.`);
    await refuses(prepareOutputFile(path.join(path.dirname(model), 'layerlens.json'), { force: true }), 'output-exists', `${path.join(path.dirname(model), 'layerlens.json')}: layerlens.json is a model's own file, which Layer Lens never replaces; choose another name.`);
    assert.deepEqual(fs.readFileSync(link), before);
  });
});

describe('caches and temporary folders stay in real folders of the model (issue 15)', () => {
  for (const [what, level] of [['.layerlens -> ../victim', '.layerlens'], ['.layerlens/embeddings -> ../../victim', 'embeddings']] as const) {
    it(`${what}: embed writes and deletes nothing through the link; the cache goes to the fallback folder, and says why`, async () => {
      const model = modelCopy(`link-${level}`);
      const dir = path.dirname(model);
      const victim = at(`victim-${level}`);
      fs.mkdirSync(path.join(victim, 'embeddings'), { recursive: true });
      fs.writeFileSync(path.join(victim, 'keep.txt'), 'victim');
      if (level === '.layerlens') fs.symlinkSync(path.relative(dir, victim), path.join(dir, '.layerlens'));
      else {
        fs.mkdirSync(path.join(dir, '.layerlens'));
        fs.symlinkSync(path.relative(path.join(dir, '.layerlens'), victim), path.join(dir, '.layerlens', 'embeddings'));
      }
      const before = hashTree(victim);
      const loaded = await loadModel(model);
      try {
        const set = await computeEmbeddings({ loaded, datasetDir: data });
        assert.ok(set.summary.cacheDir.startsWith(fallback + path.sep), set.summary.cacheDir);
        assert.match(set.summary.warnings?.join('\n') ?? '', /is a symbolic link \(to .*victim.*\); Layer Lens keeps its files only in a real folder inside the model's folder, and does not follow it\. Remove the link; the embeddings are cached in .* instead\./);
        // Again: reused from the fallback, still nothing through the link.
        const again = await computeEmbeddings({ loaded, datasetDir: data });
        assert.equal(again.summary.reused, 12);
      } finally {
        disposeModel(loaded);
      }
      assert.deepEqual(hashTree(victim), before, 'the link target is untouched');
    });
  }

  it('a frozen-backbone fine-tune (the same cache) writes nothing through a .layerlens link either', { timeout: hangLimit }, async () => {
    const model = modelCopy('link-finetune');
    const victim = at('victim-finetune');
    fs.mkdirSync(victim);
    fs.writeFileSync(path.join(victim, 'vectors-0badc0de.f32'), 'not ours');
    fs.symlinkSync(victim, path.join(path.dirname(model), '.layerlens'));
    const before = hashTree(victim);
    const warnings: string[] = [];
    await finetune({ modelJsonPath: model, datasetDir: data, settings: { epochs: 2, batchSize: 4, seed: 1, augment: { flip: { enabled: false } } }, frozen: [], freeze: 'backbone', outDir: at('link-finetune-out'), onProgress: (p) => p.type === 'warning' && warnings.push(p.message) });
    assert.deepEqual(hashTree(victim), before);
    assert.ok(warnings.some((w) => /symbolic link/.test(w) && w.includes(fallback)), warnings.join('\n'));
  });

  it('a read-only model folder (a real read-only mount): embed runs, and caches in the fallback folder', { skip: nsSkip, timeout: hangLimit }, async () => {
    const model = modelCopy('read-only');
    const dir = path.dirname(model);
    const before = hashTree(dir);
    const r = await inMountNamespace(`mount --bind ${sh(dir)} ${sh(dir)}; mount -o remount,ro,bind ${sh(dir)}; ${sh(process.execPath)} ${sh(cli)} embed ${sh(model)} ${sh(data)}`, cliEnv());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /cannot be written \(it is on a read-only file system\); the embeddings are cached in .* instead\./);
    assert.match(r.stdout, new RegExp(`cache ${fallback.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.deepEqual(hashTree(dir), before);
  });
});

describe('a finished run is never lost (issue 15)', () => {
  const settings = { epochs: 1, batchSize: 4, seed: 3, validationFraction: 0.25, augment: { flip: { enabled: false } } };

  it('four fine-tunes of one model started in the same minute: four folders (-2, -3, -4), none fails', { timeout: hangLimit }, async () => {
    const model = modelCopy('same-minute');
    const now = () => new Date(2026, 0, 2, 3, 4);
    const results = await Promise.allSettled([0, 1, 2, 3].map(() => finetune({ modelJsonPath: model, datasetDir: data, settings, frozen: [], now, onProgress: () => undefined })));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'], results.map((r) => (r.status === 'rejected' ? String(r.reason) : '')).join('\n'));
    const base = path.join(path.dirname(path.dirname(model)), 'same-minute-finetuned-20260102-0304');
    const saved = results.map((r) => (r as PromiseFulfilledResult<{ outputPath: string }>).value.outputPath).sort();
    assert.deepEqual(saved, [base, `${base}-2`, `${base}-3`, `${base}-4`]);
    for (const s of saved) assert.ok(fs.existsSync(path.join(s, 'model.json')) && fs.existsSync(path.join(s, 'metadata.json')));
  });

  it('an --out that appears while training runs: saved as <out>-2, with a warning; the folder that appeared untouched', { timeout: hangLimit }, async () => {
    const model = modelCopy('appears');
    const out = at('appears-out');
    const seen: TrainProgress[] = [];
    const r = await finetune({
      modelJsonPath: model,
      datasetDir: data,
      settings,
      frozen: [],
      outDir: out,
      onProgress: (p) => {
        seen.push(p);
        if (p.type === 'start') fs.mkdirSync(out);
      },
    });
    assert.equal(r.outputPath, `${out}-2`);
    assert.deepEqual(fs.readdirSync(out), []);
    assert.ok(seen.some((p) => p.type === 'warning' && p.message === `${out} appeared while training ran; the fine-tuned model was saved as ${out}-2 instead, and nothing was replaced.`));
  });

  it("the output's parent folder removed while training runs: saved in the fallback folder, with a warning", { timeout: hangLimit }, async () => {
    const model = modelCopy('parent-gone');
    const parent = at('parent-gone-out');
    fs.mkdirSync(parent);
    const warnings: string[] = [];
    const r = await finetune({ modelJsonPath: model, datasetDir: data, settings, frozen: [], outDir: path.join(parent, 'ft'), onProgress: (p) => (p.type === 'start' ? fs.rmSync(parent, { recursive: true }) : p.type === 'warning' && warnings.push(p.message)) });
    assert.equal(path.dirname(r.outputPath), path.join(fallback, 'results'));
    assert.ok(fs.existsSync(path.join(r.outputPath, 'model.json')));
    assert.ok(warnings.some((w) => w.startsWith(`The fine-tuned model could not be saved in ${parent}: it does not exist (or a folder above it was removed). It was saved in ${r.outputPath} instead`)), warnings.join('\n'));
  });

  const refusedBefore: [string, (dir: string) => string, (out: string, dir: string) => string][] = [
    ['a dangling symbolic link', (dir) => (fs.symlinkSync(path.join(dir, 'nowhere'), path.join(dir, 'out')), path.join(dir, 'out')), (out, dir) => `${out} is a symbolic link to ${path.join(dir, 'nowhere')}, which does not exist; Layer Lens does not save through links. Choose a new folder name.`],
    ['a path under a file', (dir) => (fs.writeFileSync(path.join(dir, 'file'), 'x'), path.join(dir, 'file', 'out')), (out) => `${path.dirname(out)}, where the fine-tuned model would go, is a file, not a folder; choose another output folder.`],
    ['a path under a missing folder', (dir) => path.join(dir, 'missing', 'out'), (out) => `the folder ${path.dirname(out)}, where the fine-tuned model would go, does not exist; create it or choose another output folder.`],
    [
      'a name that, with the temporary suffix, passes 255 bytes',
      (dir) => path.join(dir, 'é'.repeat(115)),
      (out) => `${out.length > 80 ? out.slice(0, 77) + '…' : out}: the name "${'é'.repeat(57)}…" is 230 bytes; with the 31-byte temporary suffix it is written under first, it passes the 255-byte limit of file names. Choose a shorter name for --out.`,
    ],
  ];
  for (const [what, make, message] of refusedBefore) {
    it(`--out ${what}: refused before training (no epoch runs)`, { timeout: hangLimit }, async () => {
      const dir = at(`refused-${what.replace(/\W+/g, '-')}`);
      fs.mkdirSync(dir);
      const out = make(dir);
      const r = await runCli(cli, ['finetune', modelCopy(`m-${path.basename(dir)}`), data, '--epochs', '1', '--out', out]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `layer-lens: ${message(out, dir)}\n`);
      assert.doesNotMatch(r.stdout, /Epoch/);
    });
  }

  it('--out on a read-only disk, or one without room for the model: refused before training, with the space needed', { skip: nsSkip, timeout: hangLimit }, async () => {
    const model = modelCopy('disk-checks');
    const mnt = at('mnt-checks');
    fs.mkdirSync(mnt);
    const run = (opts: string, out: string) =>
      inMountNamespace(`mount -t tmpfs -o ${opts} tmpfs ${sh(mnt)}; ${sh(process.execPath)} ${sh(cli)} finetune ${sh(model)} ${sh(data)} --epochs 1 --out ${sh(out)}`, cliEnv());
    const ro = await run('ro,size=8m', path.join(mnt, 'ft'));
    assert.equal(ro.code, 1);
    assert.equal(ro.stderr, `layer-lens: ${mnt}, where the fine-tuned model would go, cannot be written: it is on a read-only file system. Choose another place.\n`);
    const full = await run('size=64k', path.join(mnt, 'ft'));
    assert.equal(full.code, 1);
    assert.match(full.stderr, /^layer-lens: Saving the fine-tuned model in .* needs about 2\.1 MB, but the disk holding .* has 0\.\d MB free; free some space or choose another place\.\n$/);
    assert.doesNotMatch(ro.stdout + full.stdout, /Epoch/);
  });

  it('the disk fills up while training runs: the run finishes, and the model is saved in the fallback folder with the space it needed named', { skip: nsSkip, timeout: hangLimit }, async () => {
    const model = modelCopy('disk-fills');
    const mnt = at('mnt-fills');
    fs.mkdirSync(mnt);
    const out = path.join(mnt, 'ft');
    // The start line is printed after every check passed; the disk is filled then, while the epochs run.
    const r = await inMountNamespace(
      `mount -t tmpfs -o size=3m tmpfs ${sh(mnt)}; ${sh(process.execPath)} ${sh(cli)} finetune ${sh(model)} ${sh(data)} --epochs 40 --out ${sh(out)} > ${sh(at('fills.log'))} 2>&1 & ` +
        `while ! grep -q '^Fine-tune:' ${sh(at('fills.log'))}; do sleep 0.05; done; dd if=/dev/zero of=${sh(path.join(mnt, 'filler'))} bs=64k 2>/dev/null || true; wait $!; cat ${sh(at('fills.log'))}`,
      cliEnv(),
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const saved = /It was saved in (\S+) instead/.exec(r.stdout)?.[1];
    assert.ok(saved, r.stdout);
    assert.match(r.stdout, /could not be saved in .*: no space is left on the disk \(it needs about \d+\.\d MB; 0\.0 MB are free\)\. It was saved in /);
    assert.ok(fs.existsSync(path.join(saved, 'model.json')) && fs.existsSync(path.join(saved, 'metrics.csv')));
    assert.match(r.stdout, /Best val_loss .* Saved /);
  });

  it('a second Ctrl-C while the model is being saved leaves no temporary folder', { timeout: hangLimit }, async () => {
    const model = modelCopy('ctrl-c-save');
    const parent = at('ctrl-c-save-out');
    fs.mkdirSync(parent);
    const out = path.join(parent, 'ft');
    let sent = false;
    const r = await runCli(cli, ['finetune', model, data, '--epochs', '2', '--out', out], undefined, {
      started: (child) => {
        const watcher = fs.watch(parent, (_e, file) => {
          if (sent || !String(file).includes('.layerlens-tmp-')) return;
          sent = true;
          watcher.close();
          child.kill('SIGINT');
          child.kill('SIGINT');
        });
        child.on('exit', () => watcher.close());
      },
    });
    assert.ok(sent, 'the temporary folder appeared');
    assert.ok(r.code === 130 || r.signal === 'SIGINT' || r.code === 0, `ended by the Ctrl-Cs (${r.code}, ${r.signal}): ${r.stderr}`);
    assert.deepEqual(fs.readdirSync(parent).filter((f) => f.includes('.layerlens-tmp-')), [], 'no temporary folder left');
  });

  it('temporary folders of processes that no longer run are swept when Layer Lens next writes there; those of a running one are kept', async () => {
    const dir = at('sweep');
    fs.mkdirSync(dir);
    const dead = await new Promise<number>((resolve) => {
      const c = spawn(process.execPath, ['-e', '0']);
      c.on('exit', () => resolve(c.pid!));
    });
    const stale = path.join(dir, `m-finetuned-x.layerlens-tmp-${dead}-0123abcd`);
    const live = path.join(dir, `m-finetuned-y.layerlens-tmp-${process.pid}-4567cdef`);
    const foreign = path.join(dir, 'notes.layerlens-tmp-of-the-user');
    for (const d of [stale, live, foreign]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(stale, 'group1-shard1of2.bin'), 'half');
    await writeFolderAtomic(path.join(dir, 'next'), async (tmp) => fs.writeFileSync(path.join(tmp, 'x'), 'x'));
    assert.deepEqual(fs.readdirSync(dir).sort(), [path.basename(live), 'next', path.basename(foreign)].sort());
    assert.deepEqual(await sweepStaleTemps(dir), [], 'nothing else is ours to remove');
  });
});

describe('datasets with two spellings of one class are one class (issue 15)', () => {
  it('class folders "été" in NFC and in NFD: one class holding both folders\' images, with a warning', async () => {
    const dir = twoClassDataset(at('nfc-nfd'));
    for (const [name, shade] of [['\u00e9t\u00e9', 10], ['e\u0301te\u0301', 20]] as const) {
      fs.mkdirSync(path.join(dir, name));
      fs.copyFileSync(path.join(dir, 'a', '0.png'), path.join(dir, name, `${shade}.png`));
    }
    const { scanDataset } = await import('../../src/engine/train/dataset');
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.classes, ['a', 'b', 'été']);
    assert.deepEqual(scan.counts, [3, 3, 2]);
    assert.equal(new Set(scan.images.map((im) => im.label)).size, 3);
    assert.equal(scan.warnings.length, 1);
    assert.match(scan.warnings[0], /have the same name written in different Unicode forms .*their images are one class, "été"/);
  });
});
