import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chanceCorrected, linearProbe, probeSplit, silhouette, varianceRatio } from '../../src/engine/embed/advisor';
import { computeEmbeddings } from '../../src/engine/embed/compute';
import { adviseOn, EmbeddingSets } from '../../src/engine/embed/latent';
import { disposeModel, loadModel } from '../../src/engine/model';
import { Rng } from '../../src/engine/random';
import { adviseFreeze } from '../../src/engine/embed/advisorRule';
import { advisorThresholds, formatAdvisorReport } from '../../src/protocol/advise';
import { freezeUpTo } from '../../src/protocol/freezePlan';
import { fixture, makeStripesDataset } from '../fixtures/models';
import { setup } from './helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-advisor-'));

before(setup);
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** `k` classes of `per` points in d dimensions; `spread` is the distance between class centres in noise units (0: one cloud). */
function synthetic(k: number, per: number, d: number, spread: number, seed: number): { vectors: Float32Array; labels: Int32Array } {
  const rng = new Rng(seed);
  const centres = Array.from({ length: k }, () => Array.from({ length: d }, () => spread * rng.normal()));
  const vectors = new Float32Array(k * per * d);
  const labels = new Int32Array(k * per);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < per; i++) {
      const r = c * per + i;
      labels[r] = c;
      for (let j = 0; j < d; j++) vectors[r * d + j] = centres[c][j] + rng.normal();
    }
  }
  return { vectors, labels };
}

/** The advisor's measurement on synthetic embeddings, then its rule. */
function advise(perClass: number, spread: number) {
  const k = 3;
  const d = 16;
  // The probe sees at most 60 per class (what it needs); the rule sees the true size.
  const { vectors, labels } = synthetic(k, Math.min(perClass, 60), d, spread, 3);
  const probe = linearProbe(vectors, d, labels, k, 7);
  const similarity = chanceCorrected(probe.accuracy, probe.chance);
  return { similarity, advice: adviseFreeze(perClass, similarity), silhouette: silhouette(vectors, d, labels, k, 7), ratio: varianceRatio(vectors, d, labels, k) };
}

describe('freeze-or-fine-tune advisor', () => {
  it('the rule: small/large datasets x similar/different data', () => {
    assert.equal(adviseFreeze(20, 0.95).recommendation, 'freeze-all');
    assert.equal(adviseFreeze(20, 0.65).recommendation, 'freeze-all');
    assert.equal(adviseFreeze(20, 0.2).recommendation, 'freeze-early');
    assert.equal(adviseFreeze(400, 0.9).recommendation, 'freeze-all');
    assert.equal(adviseFreeze(400, 0.6).recommendation, 'freeze-early');
    assert.equal(adviseFreeze(400, 0.1).recommendation, 'freeze-early');
    assert.equal(adviseFreeze(5000, 0.9).recommendation, 'fine-tune-all');
    assert.equal(adviseFreeze(5000, 0.1).recommendation, 'fine-tune-all');
    assert.equal(adviseFreeze(5000, 0.1).learningRateFactor, 0.1);
    // The thresholds are the boundaries.
    assert.equal(adviseFreeze(advisorThresholds.smallPerClass - 1, 0.6).size, 'small');
    assert.equal(adviseFreeze(advisorThresholds.smallPerClass, 0.6).size, 'medium');
    assert.equal(adviseFreeze(advisorThresholds.largePerClass, 0.6).size, 'large');
    assert.equal(adviseFreeze(50, advisorThresholds.similar).similarity, 'similar');
    assert.equal(adviseFreeze(50, advisorThresholds.different - 0.01).similarity, 'different');
    assert.equal(adviseFreeze(20, 0.95).reasons.length, 3);
  });

  it('measures similarity on embeddings: separated classes are similar, one cloud is different', () => {
    const smallSimilar = advise(30, 8);
    const smallDifferent = advise(30, 0);
    const largeSimilar = advise(3000, 8);
    const largeDifferent = advise(3000, 0);
    assert.ok(smallSimilar.similarity > 0.9, `separated: ${smallSimilar.similarity}`);
    assert.ok(smallDifferent.similarity < 0.4, `one cloud: ${smallDifferent.similarity}`);
    assert.ok(smallSimilar.silhouette > 0.5 && smallDifferent.silhouette < 0.1, `${smallSimilar.silhouette} ${smallDifferent.silhouette}`);
    assert.ok(smallSimilar.ratio > 10 && smallDifferent.ratio < 0.2);
    assert.equal(smallSimilar.advice.recommendation, 'freeze-all');
    assert.equal(smallDifferent.advice.recommendation, 'freeze-early');
    assert.equal(largeSimilar.advice.recommendation, 'fine-tune-all');
    assert.equal(largeDifferent.advice.recommendation, 'fine-tune-all');
  });

  it('splits per class with a seed', () => {
    const labels = Int32Array.from({ length: 20 }, (_, i) => i % 2);
    const a = probeSplit(labels, 2, 1);
    assert.deepEqual(a, probeSplit(labels, 2, 1));
    assert.equal(a.test.length, 6);
    assert.equal(a.test.filter((i) => labels[i] === 0).length, 3);
    assert.notDeepEqual(a.test, probeSplit(labels, 2, 2).test);
  });

  it('reports on a real model and dataset, with a freeze plan that carries the advice out', async () => {
    const dir = path.join(tmp, 'm', 'tiny-cnn');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.cpSync(fixture('tiny-cnn'), dir, { recursive: true });
    const data = makeStripesDataset(path.join(tmp, 'stripes'), { perClass: 8, jpegEvery: 0 });
    const loaded = await loadModel(path.join(dir, 'model.json'));
    try {
      const held = new EmbeddingSets().add(await computeEmbeddings({ loaded, datasetDir: data }));
      const report = adviseOn(loaded, held, { seed: 7, learningRate: 0.001 });
      assert.deepEqual(report.classes.map((c) => c.images), [8, 8, 8]);
      assert.equal(report.layer, 'gap');
      assert.equal(report.advice.size, 'small');
      assert.equal(report.probe.testSize, 3 * 2);
      if (report.advice.recommendation === 'freeze-all') assert.deepEqual(report.plan, freezeUpTo(loaded.summary.layers, 'gap'));
      else assert.deepEqual(report.plan, freezeUpTo(loaded.summary.layers, report.planUpTo!));
      const md = formatAdvisorReport(report);
      assert.match(md, /^# Freeze or fine-tune\?/);
      assert.match(md, /\| checker \| 8 \|/);
      assert.match(md, /linear-probe accuracy/);
    } finally {
      disposeModel(loaded);
    }
  });
});
