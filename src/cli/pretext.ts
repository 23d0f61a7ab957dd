/**
 * `layer-lens pretext`: self-supervised pretraining with the rotation task on
 * a folder of unlabelled images. The same Keras-like lines as a fine-tune on
 * stdout; Ctrl-C stops between batches and writes nothing (exit 130).
 */
import * as path from 'node:path';
import { CancelledError } from '../engine/errors';
import { pretrainRotation } from '../engine/train/pretext';
import type { PretextSettings } from '../protocol/pretext';
import { formatProgress } from '../protocol/train';
import { numberArg, parseCommand } from './args';
import type { CliContext } from './context';
import { interruptible } from './interrupt';

export const pretextUsage =
  '  pretext <model.json> <images> [--epochs N] [--seed N] [--batch-size N] [--lr X] [--out <dir>]\n' +
  '                                  Self-supervised pretraining: the backbone learns to tell how each\n' +
  '                                  unlabelled image (read recursively) is turned (0/90/180/270 degrees).\n' +
  '                                  Writes <name>-rotation-pretrained-<date>/ next to the model (or --out).\n';

export async function pretextCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommand(args, { epochs: { type: 'string' }, seed: { type: 'string' }, 'batch-size': { type: 'string' }, lr: { type: 'string' }, out: { type: 'string' }, backend: { type: 'string' } });
  if (positionals.length !== 2) throw ctx.usageError('pretext takes a model.json path and a folder of images.');
  const ue = ctx.usageError;
  const settings: Partial<PretextSettings> = {};
  const epochs = numberArg('--epochs', values.epochs, { integer: true, min: 1, max: 10000 }, ue);
  const seed = numberArg('--seed', values.seed, { integer: true, min: 0 }, ue);
  const batchSize = numberArg('--batch-size', values['batch-size'], { integer: true, min: 1, max: 4096 }, ue);
  const lr = numberArg('--lr', values.lr, { min: 0, minExclusive: true, max: 10 }, ue);
  if (epochs !== undefined) settings.epochs = epochs;
  if (seed !== undefined) settings.seed = seed;
  if (batchSize !== undefined) settings.batchSize = batchSize;
  if (lr !== undefined) settings.learningRate = lr;
  await ctx.startBackend(values.backend);
  const [modelJsonPath, imagesDir] = positionals.map((p) => path.resolve(p));
  const interrupt = interruptible('stopping after this batch');
  const showPath = (abs: string) => {
    const r = path.relative(process.cwd(), abs);
    return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : abs;
  };
  try {
    const r = await pretrainRotation({
      modelJsonPath,
      imagesDir,
      settings,
      outDir: values.out,
      signal: interrupt.signal,
      onProgress: (p) => {
        for (const line of formatProgress(p, showPath)) {
          if (p.type === 'warning') process.stderr.write(`layer-lens: warning: ${line}\n`);
          else ctx.out(line.replace(/^Fine-tune: /, 'Rotation pretext: '));
        }
      },
    });
    ctx.out(`Pretrained backbone: the layers up to ${r.cutLayer}; fine-tune ${showPath(path.join(r.outputPath, 'model.json'))} with them frozen to use it.`);
    return 0;
  } catch (e) {
    if (e instanceof CancelledError) {
      process.stderr.write('layer-lens: pretraining was cancelled; nothing was written.\n');
      return 130;
    }
    throw e;
  } finally {
    interrupt.dispose();
  }
}
