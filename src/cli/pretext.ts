/**
 * `layer-lens pretext`: self-supervised pretraining with the rotation task on
 * a folder of unlabelled images. The same Keras-like lines as a fine-tune on
 * stdout; Ctrl-C stops between batches and writes nothing (exit 130).
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../engine/backend';
import { CancelledError } from '../engine/errors';
import { pretrainRotation } from '../engine/train/pretext';
import type { PretextSettings } from '../protocol/pretext';
import { formatProgress } from '../protocol/train';
import type { CliContext } from './context';

export const pretextUsage =
  '  pretext <model.json> <images> [--epochs N] [--seed N] [--batch-size N] [--lr X] [--out <dir>]\n' +
  '                                  Self-supervised pretraining: the backbone learns to tell how each\n' +
  '                                  unlabelled image (read recursively) is turned (0/90/180/270 degrees).\n' +
  '                                  Writes <name>-rotation-pretrained-<date>/ next to the model (or --out).\n';

function positive(flag: string, raw: string | undefined, usageError: (m: string) => Error, integer: boolean): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v)) || (flag !== '--seed' && v === 0)) {
    throw usageError(`${flag} ${raw}: must be a ${integer ? 'whole ' : ''}number${flag === '--seed' ? ' of at least 0' : ' above 0'}.`);
  }
  return v;
}

export async function pretextCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { epochs: { type: 'string' }, seed: { type: 'string' }, 'batch-size': { type: 'string' }, lr: { type: 'string' }, out: { type: 'string' }, backend: { type: 'string' } },
  });
  if (positionals.length !== 2) throw ctx.usageError('pretext takes a model.json path and a folder of images.');
  const ue = ctx.usageError;
  const settings: Partial<PretextSettings> = {};
  const epochs = positive('--epochs', values.epochs, ue, true);
  const seed = positive('--seed', values.seed, ue, true);
  const batchSize = positive('--batch-size', values['batch-size'], ue, true);
  const lr = positive('--lr', values.lr, ue, false);
  if (epochs !== undefined) settings.epochs = epochs;
  if (seed !== undefined) settings.seed = seed;
  if (batchSize !== undefined) settings.batchSize = batchSize;
  if (lr !== undefined) settings.learningRate = lr;
  await initBackend({ prefer: ctx.backendOption(values.backend) });
  const [modelJsonPath, imagesDir] = positionals.map((p) => path.resolve(p));
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    process.stderr.write('layer-lens: stopping after this batch (Ctrl-C again to quit at once)…\n');
  };
  process.on('SIGINT', onSigint);
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
      signal: controller.signal,
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
    process.off('SIGINT', onSigint);
  }
}
