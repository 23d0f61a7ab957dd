// The demo workspace generator (scripts/makeDemo.ts) at its small scale, and
// `npm run demo`'s runner (scripts/demo.ts) end to end through the built CLI.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { disposeModel, loadModel } from '../../src/engine/model';
import { readRecipe } from '../../src/engine/recipe';
import { demoIsCurrent, demoLayerNames, downstreamClasses, makeDemo, pretextClasses, smallScale, type DemoPaths } from '../../scripts/makeDemo';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');
const pngs = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.png'));

describe('demo workspace', () => {
  let tmp: string;
  let p: DemoPaths;
  before(async () => {
    await setup();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-demo-'));
    const r = await makeDemo({ out: path.join(tmp, 'demo'), small: true });
    assert.equal(r.generated, true);
    p = r.paths;
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('has both datasets as folders of PNGs, one per class', () => {
    assert.deepEqual(fs.readdirSync(p.pretextDataset).sort(), [...pretextClasses]);
    assert.deepEqual(fs.readdirSync(p.downstreamDataset).sort(), [...downstreamClasses]);
    for (const c of pretextClasses) assert.equal(pngs(path.join(p.pretextDataset, c)).length, smallScale.pretextPerClass);
    for (const c of downstreamClasses) assert.equal(pngs(path.join(p.downstreamDataset, c)).length, smallScale.downstreamPerClass);
    assert.ok(fs.statSync(p.sampleImage).size > 100);
    assert.ok(fs.statSync(p.downstreamImage).size > 100);
    const png = fs.readFileSync(p.sampleImage);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  });

  it('has the untrained and the pretrained model, which load with their labels', async () => {
    for (const model of [p.untrainedModel, p.pretrainedModel]) {
      const dir = path.dirname(model);
      for (const f of ['model.json', 'weights.bin', 'metadata.json', 'layerlens.json']) assert.ok(fs.existsSync(path.join(dir, f)), `${f} in ${dir}`);
      const loaded = await loadModel(model);
      try {
        assert.deepEqual(loaded.summary.labels, [...pretextClasses]);
        assert.deepEqual(loaded.summary.inputShape, [null, smallScale.size, smallScale.size, 3]);
        assert.deepEqual(
          loaded.summary.layers.map((l) => l.name),
          demoLayerNames,
        );
        assert.equal(loaded.summary.normalization, 'minusOneOne');
      } finally {
        disposeModel(loaded);
      }
    }
    // The pretrained weights differ from the untrained ones: pretraining happened.
    const a = fs.readFileSync(path.join(path.dirname(p.untrainedModel), 'weights.bin'));
    const b = fs.readFileSync(path.join(path.dirname(p.pretrainedModel), 'weights.bin'));
    assert.equal(a.length, b.length);
    assert.ok(!a.equals(b));
  });

  it("freezes the pretrained backbone in layerlens.json and nothing in the untrained model's", async () => {
    const pre = await readRecipe(p.pretrainedModel);
    assert.deepEqual(pre.diagnostics, []);
    assert.ok(pre.recipe.freeze.includes('conv1') && pre.recipe.freeze.includes('gap'), pre.recipe.freeze.join(','));
    assert.ok(!pre.recipe.freeze.includes('head'));
    const un = await readRecipe(p.untrainedModel);
    assert.deepEqual(un.recipe.freeze, []);
    // The same settings, so that the comparison is fair.
    assert.deepEqual(un.recipe.finetune, pre.recipe.finetune);
  });

  it('is cached: a second run with the same version does nothing', async () => {
    assert.equal(demoIsCurrent(p.root, true), true);
    assert.equal(demoIsCurrent(p.root, false), false);
    const again = await makeDemo({ out: p.root, small: true });
    assert.equal(again.generated, false);
  });

  it('npm run demo: summary, inspect, fine-tune and the from-scratch baseline through the CLI, exit 0', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'demo.ts'), '--small', '--out', p.root], {
      cwd: root,
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const maps = path.join(p.out, 'inspect', 'maps');
    assert.ok(fs.existsSync(path.join(p.out, 'inspect', 'summary.json')));
    assert.ok(pngs(maps).length >= 3, `feature-map grids in ${maps}`);
    for (const run of ['shapes-cnn-finetuned', 'untrained-cnn-from-scratch']) {
      for (const f of ['model.json', 'metadata.json', 'metrics.json']) assert.ok(fs.existsSync(path.join(p.out, run, f)), `${run}/${f}`);
      const meta = JSON.parse(fs.readFileSync(path.join(p.out, run, 'metadata.json'), 'utf8')) as { labels: string[] };
      assert.deepEqual(meta.labels, [...downstreamClasses]);
    }
    assert.match(r.stdout, /Total params/);
    assert.match(r.stdout, /Frozen: conv1/);
    assert.match(r.stdout, /from scratch .*\d+%/);
    assert.match(r.stdout, /fine-tuned .*\d+%/);
  });
});
