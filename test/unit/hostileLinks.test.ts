/**
 * Issue 15's classes on inputs the adversarial round did not name: links and
 * files put where Layer Lens writes or reads, beyond the cases of
 * hostileWrites.test.ts and hostileReads.test.ts. Each must end in a clear
 * refusal or a write that stays where it belongs.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { computeEmbeddings } from '../../src/engine/embed/compute';
import { writeProjectorFiles } from '../../src/engine/embed/tsv';
import { setFallbackRoot } from '../../src/engine/io/fallbackDir';
import { OutputFolder } from '../../src/engine/io/output';
import { disposeModel, loadModel } from '../../src/engine/model';
import { scanDataset } from '../../src/engine/train/dataset';
import { twoClassDataset } from '../fixtures/hostileFaults';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';
import { hashTree, refuses, root, hangLimit } from './hostileHelpers';

const at = (...p: string[]) => path.join(root, 'links', ...p);
const fallback = at('fallback');
const set = { vectors: new Float32Array([1, 2, 3, 4]), dim: 2, paths: ['a/0.png', 'b/0.png'], labels: [0, 1], classes: ['a', 'b'] };

before(async () => {
  await setup();
  fs.mkdirSync(at(), { recursive: true });
  setFallbackRoot(fallback);
});

describe('links and files where Layer Lens writes (issue 15, beyond the round)', () => {
  it('a vectors.tsv that is a link to a file elsewhere: refused; with force the link itself is replaced and its target untouched', async () => {
    const dir = at('tsv-link');
    fs.mkdirSync(dir);
    const target = at('elsewhere.txt');
    fs.writeFileSync(target, 'not yours');
    fs.symlinkSync(target, path.join(dir, 'vectors.tsv'));
    await refuses(
      writeProjectorFiles(dir, set),
      'output-exists',
      `the export folder ${dir} already holds vectors.tsv (from an earlier run?); Layer Lens does not replace files it did not write in this run. Pass --force to replace them, or choose another folder.`,
    );
    await writeProjectorFiles(dir, set, { force: true });
    assert.equal(fs.readFileSync(target, 'utf8'), 'not yours');
    assert.ok(!fs.lstatSync(path.join(dir, 'vectors.tsv')).isSymbolicLink());
    assert.equal(fs.readFileSync(path.join(dir, 'vectors.tsv'), 'utf8'), '1\t2\n3\t4\n');
  });

  it('an output folder that is a dangling link, or a file: refused before the work', async () => {
    fs.symlinkSync(at('nowhere'), at('dangling-out'));
    await refuses(OutputFolder.prepare(at('dangling-out'), { files: ['summary.json'], flag: '--out' }), 'bad-input', `--out ${at('dangling-out')} is a symbolic link to ${at('nowhere')}, which does not exist; name a folder (it is created if absent).`);
    fs.writeFileSync(at('file-out'), 'x');
    await refuses(OutputFolder.prepare(at('file-out', 'sub'), { files: ['summary.json'], flag: '--out' }), 'bad-input', `${at('file-out')} is a file, not a folder; an output cannot go inside it.`);
  });

  it('an embedding cache folder taken by a file of the same name: the cache goes to the fallback folder; the file is left alone', async () => {
    const dir = at('cache-file');
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    fs.writeFileSync(path.join(dir, '.layerlens'), 'a file, not our folder');
    const data = twoClassDataset(at('cache-file-data'));
    const before = hashTree(dir);
    const loaded = await loadModel(path.join(dir, 'model.json'));
    try {
      const s = (await computeEmbeddings({ loaded, datasetDir: data })).summary;
      assert.ok(s.cacheDir.startsWith(fallback), s.cacheDir);
      assert.match(s.warnings?.join('\n') ?? '', /\.layerlens is a file, where Layer Lens keeps a folder of its own; remove or rename it; the embeddings are cached in .* instead\./);
    } finally {
      disposeModel(loaded);
    }
    assert.deepEqual(hashTree(dir), before);
  });
});

describe('links where Layer Lens reads (issue 15, beyond the round)', () => {
  it('a class folder that is a link to another class: read once, and the empty class is named with why', async () => {
    const dir = twoClassDataset(at('class-link'));
    fs.symlinkSync('a', path.join(dir, 'c'));
    await refuses(
      scanDataset(dir),
      'bad-dataset',
      `class folder "c" in ${dir} has no usable PNG or JPEG images (c: 1 file left out: c/ is the same folder as a/ (a link); read once). Add images, or remove the folder.`,
    );
  });

  it('a hard link of one image in two classes: used once, in the first class', async () => {
    const dir = twoClassDataset(at('hard-link'));
    fs.linkSync(path.join(dir, 'a', '1.png'), path.join(dir, 'b', 'also-1.png'));
    const scan = await scanDataset(dir);
    assert.deepEqual(scan.counts, [3, 3]);
    assert.deepEqual(scan.skipped, [{ file: 'b/also-1.png', reason: 'duplicate', detail: 'is the same file as a/1.png (a link); used once' }]);
  });
});

describe('bounded walks and worded errors (issue 15, beyond the round)', () => {
  it('a folder far larger than any dataset (a whole disk picked): the walk stops at its bound with a clear error, having listed no more', async () => {
    const dir = twoClassDataset(at('huge'), 20);
    const { TreeWalk } = await import('../../src/engine/io/walk');
    const real = fs.realpathSync(dir);
    const walk = new TreeWalk(real, { maxDepth: 8, maxFiles: 10, tooMany: () => new Error('too many') });
    walk.enterDir(fs.statSync(real), '');
    await assert.rejects(walk.list(dir, '', 0), /too many/);
  });

  it('a file-system error no engine code worded is said in words, by the CLI and the worker alike', async () => {
    const { fsErrorLine } = await import('../../src/engine/io/fsErrors');
    const eio = Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', path: '/data/x.png' });
    assert.equal(fsErrorLine(eio), '/data/x.png: the disk reported an input/output error (a failing disk, or a network or USB drive that went away).');
    assert.equal(fsErrorLine(Object.assign(new Error('x'), { code: 'ENOSPC' })), 'no space is left on the disk.');
    assert.equal(fsErrorLine(new Error('not a file-system error')), undefined);
  });
});

describe('kernel paths as outputs and pipes as inputs (issue 15, beyond the round)', () => {
  const linux = process.platform === 'linux' && fs.existsSync('/proc/self') ? false : 'needs Linux /proc';
  it('an output under /proc: refused as a kernel folder before the work, not "does not exist"', { skip: linux }, async () => {
    const { prepareResultFolder } = await import('../../src/engine/io/output');
    await refuses(prepareResultFolder('/proc/layerlens-out', { made: 'the fine-tuned model' }), 'io', '/proc, where the fine-tuned model would go, is a folder of the kernel (/proc), not a folder on a disk; choose another place.');
  });

  it('--image /dev/stdin fed by a pipe: "a pipe, not a file", never read', { skip: linux }, async () => {
    const { spawnSync } = await import('node:child_process');
    const { repoRoot } = await import('../fixtures/hostile');
    const script = `require(${JSON.stringify(path.join(repoRoot, 'node_modules/tsx/dist/cjs/index.cjs'))});
require(${JSON.stringify(path.join(repoRoot, 'src/engine/image.ts'))}).readImageFile('/dev/stdin').then(() => console.log('read'), (e) => console.log(e.message));`;
    const r = spawnSync(process.execPath, ['-e', script], { input: 'not an image', encoding: 'utf8', timeout: hangLimit });
    assert.equal(r.stdout.trim(), '/dev/stdin is a pipe, socket or terminal, not a file; pick a PNG or JPEG image.');
  });
});
