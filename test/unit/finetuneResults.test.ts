/**
 * What a fine-tune trains and what it reports: a Teachable Machine export's
 * default (a new head on the frozen backbone), freeze 'none' and 'backbone',
 * and the evaluation of the saved model on the validation split (per-class
 * accuracy, confusion matrix, every image's outcome) in the 'end' message,
 * metrics.json and metadata.json — which `layer-lens evaluate` reproduces
 * from the saved model alone.
 *
 * Run: node --import tsx --test test/unit/finetuneResults.test.ts
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { evaluateModel } from '../../src/engine/train/evaluate';
import { finetune, type FinetuneOptions } from '../../src/engine/train/finetune';
import type { Evaluation, TrainEnd, TrainProgress, TrainStart } from '../../src/protocol/train';
import { fixture, makeStripesDataset, stripesClasses } from '../fixtures/models';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-results-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const at = (...p: string[]) => path.join(tmp, ...p);
let dataset = '';

function modelCopy(name: string, into: string): string {
  const dir = at(into, name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.cpSync(fixture(name), dir, { recursive: true });
  return path.join(dir, 'model.json');
}

async function run(o: Partial<FinetuneOptions> & Pick<FinetuneOptions, 'modelJsonPath'>): Promise<{ result: Awaited<ReturnType<typeof finetune>>; progress: TrainProgress[] }> {
  const progress: TrainProgress[] = [];
  const result = await finetune({ datasetDir: dataset, settings: {}, frozen: [], onProgress: (p) => progress.push(p), ...o });
  return { result, progress };
}

before(async () => {
  await setup();
  dataset = makeStripesDataset(at('stripes'));
});

describe('what a fine-tune trains', () => {
  it('a Teachable Machine export with no freeze plan trains a new head on its frozen backbone, as Teachable Machine does, and says how to train every layer', async () => {
    const { result, progress } = await run({ modelJsonPath: modelCopy('nested', 'tm-default'), settings: { epochs: 2, batchSize: 16 }, frozen: [] });
    const start = progress.find((p): p is TrainStart => p.type === 'start');
    assert.deepEqual(start?.frozen.paths, ['features']);
    assert.equal(start?.augment, 'none', 'no augmentation, so the backbone outputs are cached');
    assert.equal(result.embeddingCache, true);
    assert.ok(start?.warnings.some((w) => /is a Teachable Machine export and its recipe freezes no layer: training a new head on its frozen backbone.*without augmentation.*--freeze none/.test(w)), start?.warnings.join('\n'));
  });

  it("freeze 'none' trains every layer of a Teachable Machine export with the compiled step; 'backbone' freezes any model up to its head", async () => {
    const every = await run({ modelJsonPath: modelCopy('nested', 'tm-none'), settings: { epochs: 1, batchSize: 16 }, frozen: ['features'], freeze: 'none' });
    const s1 = every.progress.find((p): p is TrainStart => p.type === 'start');
    assert.deepEqual(s1?.frozen.paths, []);
    assert.equal(every.result.embeddingCache, false);
    assert.match(s1?.step ?? '', /^Step: compiled: /);
    assert.ok(!s1?.warnings.some((w) => /Teachable Machine export/.test(w)));
    const head = await run({ modelJsonPath: modelCopy('tiny-cnn', 'backbone'), settings: { epochs: 1, batchSize: 16, augment: { flip: { enabled: false } } }, frozen: [], freeze: 'backbone' });
    const s2 = head.progress.find((p): p is TrainStart => p.type === 'start');
    assert.ok((s2?.frozen.paths.length ?? 0) > 0 && s2?.trainableParams! < s2?.totalParams!, 'the layers before the head are frozen');
    assert.equal(head.result.embeddingCache, true);
  });

});

describe('what a fine-tune reports', () => {
  it('evaluates the saved model on the validation split: per class, a confusion matrix, every image; in the end message, metrics.json and metadata.json', async () => {
    const { result, progress } = await run({ modelJsonPath: modelCopy('tiny-cnn', 'eval'), settings: { epochs: 2, batchSize: 16, augment: { flip: { enabled: false } } } });
    const end = progress.find((p): p is TrainEnd => p.type === 'end');
    const e = end?.evaluation;
    assert.ok(e, 'the end message carries the evaluation');
    assert.deepEqual(e.classes, stripesClasses);
    assert.equal(e.images.length, result.valSize);
    assert.equal(e.confusion.flat().reduce((a, b) => a + b, 0), result.valSize);
    assert.deepEqual(e.perClass.map((p) => p.images), e.confusion.map((row) => row.reduce((a, b) => a + b, 0)));
    assert.ok(e.images.every((im) => fs.existsSync(im.path) && im.path.startsWith(dataset)));
    const metrics = JSON.parse(fs.readFileSync(path.join(result.outputPath, 'metrics.json'), 'utf8')) as { evaluation: Evaluation; lastValue: number };
    assert.deepEqual(metrics.evaluation.confusion, e.confusion);
    assert.ok(metrics.evaluation.images.every((im) => !path.isAbsolute(im.path)), 'metrics.json names images relative to the model');
    const metadata = JSON.parse(fs.readFileSync(path.join(result.outputPath, 'metadata.json'), 'utf8')) as { validationImages: string[] };
    assert.equal(metadata.validationImages.length, result.valSize);

    // The saved model alone, on the same dataset, reproduces it (its metadata says the split).
    const again = await evaluateModel({ modelJsonPath: path.join(result.outputPath, 'model.json'), datasetDir: dataset });
    assert.match(again.splitFrom, /the fine-tune's own split/);
    assert.deepEqual(again.evaluation.confusion, e.confusion);
    assert.deepEqual(again.evaluation.images.map((im) => [im.path, im.label, im.predicted]), e.images.map((im) => [im.path, im.label, im.predicted]));

    // And so does the command line, as JSON and as a table.
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'evaluate', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    const json = cli(path.join(result.outputPath, 'model.json'), dataset, '--json');
    assert.equal(json.status, 0, json.stderr);
    assert.deepEqual((JSON.parse(json.stdout) as Evaluation).confusion, e.confusion);
    const table = cli(path.join(result.outputPath, 'model.json'), dataset);
    assert.match(table.stdout, /^Per class:$/m);
    assert.match(table.stdout, /^Confusion matrix \(rows: true class, columns: predicted\):$/m);
    const bad = cli(path.join(result.outputPath, 'model.json'), dataset, '--split', 'some');
    assert.equal(bad.status, 2);
  });

  it('evaluate refuses a dataset whose classes the model does not know, naming them', async () => {
    const other = at('other-classes');
    fs.mkdirSync(path.join(other, 'zebra'), { recursive: true });
    fs.cpSync(path.join(dataset, 'checker'), path.join(other, 'checker'), { recursive: true });
    fs.cpSync(path.join(dataset, 'checker'), path.join(other, 'zebra'), { recursive: true });
    const { result } = await run({ modelJsonPath: modelCopy('tiny-cnn', 'eval-bad'), settings: { epochs: 1, batchSize: 16 } });
    await assert.rejects(evaluateModel({ modelJsonPath: path.join(result.outputPath, 'model.json'), datasetDir: other }), /the class folder zebra of .* is not among .*'s labels \(checker, horizontal, vertical\)/);
  });
});
