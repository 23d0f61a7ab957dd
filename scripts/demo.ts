/**
 * `npm run demo`: a newcomer's first ten minutes in one command. Builds the
 * CLI if dist/ lacks it, makes the demo workspace (scripts/makeDemo.ts, cached
 * in demo/), then runs the main job through the built CLI, as a user would:
 *
 *   1. layer-lens summary   the pretrained CNN's layer table
 *   2. layer-lens inspect   feature maps of a sample image -> demo/out/inspect/
 *   3. the recipe           layerlens.json freezes the backbone (conv1 ... gap)
 *   4. layer-lens finetune  the pretrained CNN on the downstream task, with a
 *                           progress bar -> demo/out/shapes-cnn-finetuned/
 *   5. layer-lens finetune  the same CNN from random weights, same settings
 *                           -> demo/out/untrained-cnn-from-scratch/
 *
 * and prints the two validation accuracies side by side: what a frozen
 * pretrained backbone buys on a small downstream dataset.
 *
 *   node --import tsx scripts/demo.ts [--out demo] [--small] [--vscode]
 *     --small    the tiny demo (tests)        --vscode  scripts/openDemo.ts instead
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { readRecipe } from '../src/engine/recipe';
import { augmentSummary, type EpochMetrics } from '../src/protocol/train';
import { ensureBuilt, REPO_ROOT, run, shown } from './repo';
import { demoPaths, downstreamClasses, makeDemo, pretextClasses, type DemoPaths } from './makeDemo';

const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');

export interface DemoRunOptions {
  /** The demo folder (default demo/ in the repo). */
  out: string;
  small?: boolean;
  /** Where the report goes (default stdout); the CLI's own output is inherited. */
  write?: (text: string) => void;
}

export interface DemoRunResult {
  code: number;
  paths: DemoPaths;
  /** Validation accuracy after the last epoch, per run (undefined when a run failed). */
  fromScratch?: number;
  fineTuned?: number;
  seconds: number;
}

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function readMetrics(folder: string): EpochMetrics[] | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(folder, 'metrics.json'), 'utf8')) as { epochs: EpochMetrics[] }).epochs;
  } catch {
    return undefined;
  }
}


export async function runDemo(o: DemoRunOptions): Promise<DemoRunResult> {
  const started = performance.now();
  const write = o.write ?? ((s: string) => process.stdout.write(s));
  const p = demoPaths(o.out);
  const step = (n: number, title: string) => write(`\n${bold(`== ${n}. ${title}`)}\n`);
  const cli = async (...args: string[]) => {
    write(`$ layer-lens ${args.map((a) => (path.isAbsolute(a) ? shown(a) : a)).join(' ')}\n`);
    return run(process.execPath, [CLI, ...args]);
  };

  await ensureBuilt(write);
  write(bold('Layer Lens demo') + ': pretrain on one task (pretext), reuse the features for another (downstream).\n');
  const made = await makeDemo({ out: p.root, small: o.small, log: (l) => write(`  ${l}\n`) });
  write(
    made.generated
      ? `Demo workspace written to ${shown(p.root)}/ in ${made.seconds.toFixed(0)} s.\n`
      : `Demo workspace ${shown(p.root)}/ is ready (cached; \`npx tsx scripts/makeDemo.ts --force\` remakes it).\n`,
  );
  write(`  pretext task:    ${shown(p.pretextDataset)}/ (${pretextClasses.join(', ')})\n`);
  write(`  downstream task: ${shown(p.downstreamDataset)}/ (${downstreamClasses.join(', ')}: new shapes, few images)\n`);
  // Results of earlier runs go: the fine-tune refuses to write over a folder.
  fs.rmSync(p.out, { recursive: true, force: true });
  fs.mkdirSync(p.out, { recursive: true });
  const fineTunedDir = path.join(p.out, 'shapes-cnn-finetuned');
  const scratchDir = path.join(p.out, 'untrained-cnn-from-scratch');
  const result = (code: number, extra: Partial<DemoRunResult> = {}): DemoRunResult => ({ code, paths: p, seconds: (performance.now() - started) / 1000, ...extra });

  step(1, 'The pretrained model: layer table');
  let code = await cli('summary', p.pretrainedModel);
  if (code !== 0) return result(code);

  step(2, `Feature maps of ${path.basename(p.sampleImage)} (a pretext shape)`);
  const inspectDir = path.join(p.out, 'inspect');
  code = await cli('inspect', p.pretrainedModel, '--image', p.sampleImage, '--out', inspectDir);
  if (code !== 0) return result(code);
  write(`Open ${shown(path.join(inspectDir, 'maps'))}/ to see each layer's channels as an image grid.\n`);

  step(3, 'The recipe: freeze the backbone');
  const { file: recipeFile, recipe } = await readRecipe(p.pretrainedModel);
  const f = recipe.finetune;
  write(`${shown(recipeFile)} freezes ${recipe.freeze.join(', ')}: the pretrained feature extractor stays fixed.\n`);
  write(`The fine-tune replaces the head (the classes are new) and trains only that: ${f.epochs} epochs, batches of ${f.batchSize}, ${f.optimizer} lr ${f.learningRate},\n`);
  write(`${Math.round(f.validationFraction * 100)}% of each class held out for validation (seed ${f.seed}), augmentation: ${augmentSummary(f.augment)}.\n`);

  step(4, 'Fine-tune the pretrained model on the downstream task (backbone frozen)');
  code = await cli('finetune', p.pretrainedModel, p.downstreamDataset, '--out', fineTunedDir);
  if (code !== 0) return result(code);

  step(5, 'For comparison: the same CNN trained from scratch (random weights, nothing frozen, same settings)');
  code = await cli('finetune', p.untrainedModel, p.downstreamDataset, '--out', scratchDir);
  if (code !== 0) return result(code);

  const ft = readMetrics(fineTunedDir);
  const sc = readMetrics(scratchDir);
  const last = (m: EpochMetrics[] | undefined) => m?.[m.length - 1]?.val_acc;
  const best = (m: EpochMetrics[] | undefined) => (m ? Math.max(...m.map((e) => e.val_acc ?? 0)) : undefined);
  const pct = (v: number | undefined) => (v === undefined ? '   -' : `${(v * 100).toFixed(0).padStart(3)}%`);
  const epochs = ft?.length ?? 0;
  step(6, 'Result: validation accuracy on the downstream task');
  write(`Same images, same seeded train/validation split, ${epochs} epochs each; chance is ${pct(1 / downstreamClasses.length).trim()}.\n`);
  write(`                                                        last epoch   best epoch\n`);
  write(`  from scratch (random weights, every layer trained)        ${pct(last(sc))}        ${pct(best(sc))}\n`);
  write(`  fine-tuned   (pretrained backbone frozen, new head)       ${pct(last(ft))}        ${pct(best(ft))}\n`);
  write(`Models: ${shown(fineTunedDir)}/ and ${shown(scratchDir)}/ (each with metrics.csv).\n`);
  const r = result(0, { fromScratch: last(sc), fineTuned: last(ft) });
  write(`\nDone in ${r.seconds.toFixed(0)} s. Next: \`npm run demo:vscode\` opens this workspace in VS Code (code-server) with Layer Lens.\n`);
  return r;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(REPO_ROOT, 'demo') },
      small: { type: 'boolean', default: false },
      vscode: { type: 'boolean', default: false },
    },
  });
  if (values.vscode) {
    const { openDemo } = await import('./openDemo');
    await openDemo({ out: values.out, small: values.small });
    return;
  }
  const r = await runDemo({ out: values.out, small: values.small });
  process.exitCode = r.code;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
