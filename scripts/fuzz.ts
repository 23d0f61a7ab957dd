/**
 * The long fuzz run, by hand: the same seeded mutations as
 * test/unit/fuzz.test.ts, as many cases as you like.
 *
 *   npx tsx scripts/fuzz.ts --cases 100000 --seed 7
 *   npx tsx scripts/fuzz.ts --seed 7 --case 4711          replay one case
 *   npx tsx scripts/fuzz.ts --kinds model --minutes 30     only model.json files
 *   npx tsx scripts/fuzz.ts --kinds h5,keras --cases 20000 Keras files only
 *
 * Kinds: model, png, jpeg, h5, keras. The h5 and keras kinds start from small
 * models written at the start of the run and from the real Keras files in
 * ../shared/fixtures/keras-mnist when present (--keras-files a.h5,b.keras
 * names others, --keras-files none leaves them out).
 *
 * Every case runs in the real compute worker (the bundles are rebuilt when
 * src/ is newer than dist/). Findings (hangs, worker crashes, library errors
 * that leak through, unclear messages, reads outside the model folder) are
 * printed with their case number and their inputs saved under --save
 * (default .cache/fuzz-findings/). Exit code 1 when there are findings.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/engine/backend';
import { currentBundles } from '../test/fixtures/bundles';
import { fuzzKinds, runFuzz, type FuzzKind, type FuzzReport } from '../test/fixtures/fuzz';
import { repoRoot } from '../test/fixtures/hostile';
import { ensureFixtures } from '../test/fixtures/models';

function printReport(r: FuzzReport): void {
  const rate = r.cases / (r.ms / 1000);
  const kinds = Object.entries(r.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
  console.log(`\n${r.cases} cases (${kinds}) in ${(r.ms / 1000).toFixed(1)} s: ${rate.toFixed(0)} cases/s, seed ${r.seed}`);
  console.log(`loaded ${r.loaded}, refused ${r.refused} (${Object.entries(r.byCode).map(([c, n]) => `${c} ${n}`).join(', ')})`);
  console.log(`time: making inputs ${(r.makeMs / 1000).toFixed(1)} s, running them ${(r.runMs / 1000).toFixed(1)} s`);
  console.log(`worker restarts ${r.workerRestarts}; tensors left behind in the worker: ${r.tensorGrowth}`);
  console.log('slowest cases:', r.slowest.map((s) => `#${s.index} ${s.kind} ${s.ms} ms [${s.mutations.join(' ')}]`).join('; '));
  console.log('\nmost frequent messages:');
  for (const [m, n] of r.messages.slice(0, 40)) console.log(`  ${String(n).padStart(6)}  ${m}`);
  if (r.findings.length === 0) {
    console.log('\nno findings');
    return;
  }
  console.log(`\n${r.findings.length} findings:`);
  for (const f of r.findings) console.log(`  #${f.index} ${f.kind} [${f.mutations.join(' ')}] ${f.problem}: ${f.message}${f.saved ? `\n      saved in ${f.saved}` : ''}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '10000' },
      seed: { type: 'string', default: String(Date.now() % 100000) },
      case: { type: 'string' },
      minutes: { type: 'string' },
      kinds: { type: 'string' },
      'keras-files': { type: 'string' },
      'per-case-ms': { type: 'string', default: '10000' },
      save: { type: 'string', default: path.join(repoRoot, '.cache', 'fuzz-findings') },
    },
  });
  await initBackend({ prefer: 'cpu' });
  await ensureFixtures();
  const distDir = await currentBundles();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-fuzz-'));
  const seed = Number(values.seed);
  const kinds = values.kinds?.split(',').map((k) => k.trim()) as FuzzKind[] | undefined;
  const unknown = kinds?.filter((k) => !fuzzKinds.includes(k));
  if (unknown?.length) {
    console.error(`unknown kind ${unknown.join(', ')}; kinds are ${fuzzKinds.join(', ')}`);
    return 2;
  }
  const shared = path.resolve(repoRoot, '../shared/fixtures/keras-mnist');
  const kerasFiles =
    values['keras-files'] === 'none'
      ? []
      : values['keras-files'] !== undefined
        ? values['keras-files'].split(',')
        : ['mnist_model.h5', 'mnist_model.keras'].map((f) => path.join(shared, f)).filter((f) => fs.existsSync(f));
  console.log(`fuzzing with seed ${seed} in ${workDir} (worker from ${distDir}; real Keras files: ${kerasFiles.map((f) => path.basename(f)).join(", ") || "none"})`);
  try {
    const report = await runFuzz({
      seed,
      cases: Number(values.cases),
      only: values.case !== undefined ? Number(values.case) : undefined,
      budgetMs: values.minutes !== undefined ? Number(values.minutes) * 60_000 : undefined,
      perCaseMs: Number(values['per-case-ms']),
      kinds,
      kerasFiles,
      workDir,
      distDir,
      saveDir: values.save,
      checkLeaks: true,
      onProgress: (done, r) => process.stderr.write(`\r${done} cases, ${r.findings.length} findings`),
    });
    printReport(report);
    return report.findings.length > 0 ? 1 : 0;
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

void main().then((code) => (process.exitCode = code));
