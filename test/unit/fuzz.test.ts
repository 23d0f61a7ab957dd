/**
 * Seeded fuzzing of everything a stranger's folder can hand the engine: a
 * model.json (JSON-aware mutations: dropped, duplicated and retyped keys, huge
 * and negative numbers and dimensions, long strings, deep nesting, manifest
 * paths and shapes, class names, dtypes; and its weights file), and PNG and
 * JPEG files (bit flips, truncation, chunk and segment lengths, header
 * dimensions and fields), and Keras .h5 and .keras files (small models written
 * at the start by test/fixtures/keras.ts, mutated as bytes, near HDF5
 * structures and in zip headers, and as structure: the config JSON, weight
 * shapes, dtypes, links and attributes, zip entries). Each case runs in the real compute worker with a
 * time limit, and must end in success or an EngineError with one clear line
 * naming the file: no hang, no worker crash, no library error leaking
 * through, no tensor left behind, no success for a manifest that points
 * outside the model folder. The mutators and the loop live in
 * test/fixtures/hostile.ts; `npx tsx scripts/fuzz.ts --cases 100000 --seed N`
 * runs the same thing for as long as you like.
 *
 * LAYERLENS_FUZZ_SEED picks another seed (the run prints it on failure).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { currentBundles } from '../fixtures/bundles';
import { runFuzz, type FuzzReport } from '../fixtures/fuzz';
import { setup } from './helpers';

const seed = Number(process.env['LAYERLENS_FUZZ_SEED'] ?? 20240611);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-fuzz-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

function describeFindings(r: FuzzReport): string {
  return r.findings.map((f) => `case ${f.index} (${f.kind}: ${f.mutations.join(' ')}): ${f.problem}: ${f.message}`).join('\n');
}

describe('fuzzing (seeded, in the compute worker)', () => {
  let distDir = '';
  before(async () => {
    await setup();
    distDir = await currentBundles();
  });

  // A fixed number of cases, not as many as fit in a time: the run must pass on a loaded machine.
  // The per-case limit only tells a hang from a slow case; the test's own timeout is a safety net.
  it(`mutated model.json, PNG and JPEG files end in success or one clear line (seed ${seed})`, { timeout: 900_000 }, async (t) => {
    const report = await runFuzz({ seed, cases: 1500, perCaseMs: 60_000, workDir: work, distDir, checkLeaks: false, kinds: ['model', 'model', 'model', 'png', 'jpeg'] });
    t.diagnostic(
      `${report.cases} cases (model ${report.byKind.model}, png ${report.byKind.png}, jpeg ${report.byKind.jpeg}) in ${(report.ms / 1000).toFixed(1)} s, ` +
        `${(report.cases / (report.ms / 1000)).toFixed(0)} cases/s; loaded ${report.loaded}, refused ${report.refused}; slowest ${report.slowest[0]?.ms ?? 0} ms`,
    );
    assert.equal(report.cases, 1500);
    assert.ok(report.byKind.model > 0 && report.byKind.png > 0 && report.byKind.jpeg > 0);
    assert.ok(report.loaded > 0 && report.refused > 0, 'the mutations are neither all fatal nor all harmless');
    assert.equal(report.findings.length, 0, `replay with: npx tsx scripts/fuzz.ts --seed ${seed} --case N\n${describeFindings(report)}`);
    assert.equal(report.workerRestarts, 0, 'no case hung or crashed the worker');
    assert.ok(report.tensorGrowth <= 0, `${report.tensorGrowth} tensors were left in the worker`);
  });

  // A Keras case costs ~20x a model.json one (HDF5 written, parsed, the model built twice), so it gets its own budget.
  it(`mutated Keras .h5 and .keras files end in success or one clear line (seed ${seed})`, { timeout: 900_000 }, async (t) => {
    const report = await runFuzz({ seed, cases: 150, perCaseMs: 60_000, workDir: path.join(work, 'keras'), distDir, checkLeaks: false, kinds: ['h5', 'keras'] });
    t.diagnostic(
      `${report.cases} cases (h5 ${report.byKind.h5}, keras ${report.byKind.keras}) in ${(report.ms / 1000).toFixed(1)} s, ` +
        `${(report.cases / (report.ms / 1000)).toFixed(0)} cases/s; loaded ${report.loaded}, refused ${report.refused}; slowest ${report.slowest[0]?.ms ?? 0} ms`,
    );
    assert.equal(report.cases, 150);
    assert.ok(report.byKind.h5 > 0 && report.byKind.keras > 0, 'both Keras kinds ran');
    assert.ok(report.loaded > 0 && report.refused > 0, 'the mutations are neither all fatal nor all harmless');
    assert.equal(report.findings.length, 0, `replay with: npx tsx scripts/fuzz.ts --kinds h5,keras --keras-files none --seed ${seed} --case N\n${describeFindings(report)}`);
    assert.equal(report.workerRestarts, 0, 'no case hung or crashed the worker');
    assert.ok(report.tensorGrowth <= 0, `${report.tensorGrowth} tensors were left in the worker`);
  });
});
