/**
 * `layer-lens finetune`: the engine's fine-tune job in a terminal. Settings
 * come from the model's layerlens.json (when there is one) and are overridden
 * by flags. stdout gets the same Keras-like lines as the output channel (one
 * per epoch); stderr gets warnings and, on a terminal, a live progress bar.
 * Ctrl-C cancels between batches and leaves no output folder (exit 130); a
 * second Ctrl-C quits at once. src/cli/main.ts routes here.
 */
import * as path from 'node:path';
import { CancelledError, EngineError } from '../engine/errors';
import { rel } from '../engine/io/files';
import { disposeModel, loadModel } from '../engine/model';
import { formatDiagnostic, readRecipe } from '../engine/recipe';
import { finetuneOnnx, isOnnxPath } from '../engine/onnx/finetune';
import { finetune } from '../engine/train/finetune';
import { freezeUpTo } from '../protocol/freezePlan';
import { augmentSchema, finetuneSchema, type AugmentSettings } from '../protocol/recipe';
import { formatBatchLine, formatProgress, type FinetuneSettingsInput, type TrainProgress } from '../protocol/train';
import { numberArg, parseCommand, schemaNumberArg } from './args';
import type { CliContext } from './context';
import { interruptible } from './interrupt';

export const finetuneUsage =
  '  finetune <model> <dataset> [--epochs N] [--batch-size N] [--lr X] [--seed N]\n' +
  '          [--freeze none|backbone | --freeze-up-to <layer>] [--memory-limit MB]\n' +
  '          [--augment flip,rotate,zoom,brightness,contrast|none]\n' +
  '          [--val F] [--patience N] [--threads N] [--out <dir>]\n' +
  '                                  Fine-tune on a folder with one sub-folder of images per class;\n' +
  "                                  settings from the model's layerlens.json, overridden by flags.\n" +
  '                                  --augment rotate=20,zoom=0.2 sets strengths. Writes a new folder\n' +
  '                                  <name>-finetuned-<date>/ next to the model (or --out).\n' +
  '                                  --threads 2 splits each batch between two threads.\n' +
  '                                  --freeze none trains every layer, --freeze backbone only the head\n' +
  "                                  (a Teachable Machine export's default when its recipe freezes nothing).\n" +
  '                                  --memory-limit caps the training step (default: wasm\'s 4 GB);\n' +
  '                                  larger batches run as micro-batches.\n' +
  '                                  An .onnx model keeps its backbone frozen (ONNX Runtime) and gets a\n' +
  '                                  new head: the result is one .onnx with labels.txt and metadata.json.\n';

type NumberField = 'epochs' | 'batchSize' | 'learningRate' | 'seed' | 'validationFraction' | 'threads';

const augmentNames = ['flip', 'rotate', 'zoom', 'brightness', 'contrast'] as const;
type AugmentName = (typeof augmentNames)[number];

function isAugmentName(v: string): v is AugmentName {
  return (augmentNames as readonly string[]).includes(v);
}

/**
 * `--augment flip,rotate=20`: exactly the named augmentations, each with the
 * given strength, else the recipe's, else the default. "none" turns all off.
 */
export function parseAugmentFlag(value: string, base: AugmentSettings, usageError: (m: string) => Error): AugmentSettings {
  const out = augmentSchema.parse({
    flip: { enabled: false },
    rotate: { ...base.rotate, enabled: false },
    zoom: { ...base.zoom, enabled: false },
    brightness: { ...base.brightness, enabled: false },
    contrast: { ...base.contrast, enabled: false },
  });
  if (value.trim() === 'none') return out;
  for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, strength] = part.split('=');
    if (!isAugmentName(name)) throw usageError(`--augment: unknown augmentation "${name}"; use ${augmentNames.join(', ')} or none.`);
    if (name === 'flip') {
      if (strength !== undefined) throw usageError('--augment: flip takes no strength.');
      out.flip.enabled = true;
      continue;
    }
    const entry = { ...out[name], enabled: true };
    if (strength !== undefined) {
      const v = Number(strength);
      const key = name === 'rotate' ? 'degrees' : 'amount';
      const checked = augmentSchema.shape[name].safeParse({ enabled: true, [key]: v });
      if (strength.trim() === '' || !Number.isFinite(v) || !checked.success) {
        const range = name === 'rotate' ? '0 to 180 degrees' : name === 'zoom' ? '0 to 0.5' : '0 to 1';
        throw usageError(`--augment: ${name}=${strength} is out of range; use ${range}.`);
      }
      Object.assign(entry, { [key]: v });
    }
    Object.assign(out[name], entry);
  }
  return out;
}

const MAX_BAR = 30;

/** Writes progress: lines on stdout, a bar on stderr while it is a terminal. */
class ProgressPrinter {
  private barShown = false;
  constructor(
    private readonly out: (line: string) => void,
    private readonly tty: boolean,
  ) {}

  private clearBar(): void {
    if (this.barShown) process.stderr.write('\r\x1b[2K');
    this.barShown = false;
  }

  handle(p: TrainProgress): void {
    if (p.type === 'batch') {
      if (!this.tty) return;
      const text = formatBatchLine(p);
      const width = process.stderr.columns || 80;
      // The bar takes what the line leaves of the terminal's width; on a narrow one, only the text.
      const size = Math.min(MAX_BAR, width - text.length - 4);
      const filled = Math.round((p.batch / p.batches) * size);
      const bar = size >= 8 ? `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(size - filled)}] ` : '';
      process.stderr.write(`\r\x1b[2K${(bar + text).slice(0, width - 1)}`);
      this.barShown = true;
      return;
    }
    this.clearBar();
    const showPath = (abs: string) => {
      const r = path.relative(process.cwd(), abs);
      return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : abs;
    };
    for (const line of formatProgress(p, showPath)) {
      if (p.type === 'warning') process.stderr.write(`layer-lens: warning: ${line}\n`);
      else this.out(line);
    }
  }

  done(): void {
    this.clearBar();
  }
}

/** Runs `layer-lens finetune`; returns the exit code (130 when cancelled with Ctrl-C). */
export async function finetuneCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommand(args, {
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      seed: { type: 'string' },
      'freeze-up-to': { type: 'string' },
      freeze: { type: 'string' },
      'memory-limit': { type: 'string' },
      augment: { type: 'string' },
      val: { type: 'string' },
      patience: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
      backend: { type: 'string' },
  });
  if (positionals.length !== 2) throw ctx.usageError('finetune takes a model path and a dataset folder.');
  const [modelJsonPath, datasetDir] = positionals.map((p) => path.resolve(p));
  const ue = ctx.usageError;
  const field = (flag: string, raw: string | undefined, name: NumberField) => schemaNumberArg(flag, raw, finetuneSchema.shape[name], ue);
  const flags: Partial<Record<NumberField, number>> = {
    epochs: field('--epochs', values.epochs, 'epochs'),
    batchSize: field('--batch-size', values['batch-size'], 'batchSize'),
    learningRate: field('--lr', values.lr, 'learningRate'),
    seed: field('--seed', values.seed, 'seed'),
    validationFraction: field('--val', values.val, 'validationFraction'),
    threads: field('--threads', values.threads, 'threads'),
  };
  const patience = schemaNumberArg('--patience', values.patience, finetuneSchema.shape.earlyStopping.unwrap().shape.patience.unwrap(), ue);
  const mode = values.freeze;
  if (mode !== undefined && mode !== 'none' && mode !== 'backbone') throw ue(`--freeze ${mode}: must be none (train every layer) or backbone (train only the head).`);
  if (mode !== undefined && values['freeze-up-to'] !== undefined) throw ue('--freeze and --freeze-up-to choose the frozen layers two ways; give one.');
  const memoryLimitMB = numberArg('--memory-limit', values['memory-limit'], { min: 64, max: 4096 }, ue);
  await ctx.startBackend(values.backend);

  // The layer table checks the recipe's freeze paths and resolves --freeze-up-to.
  const loaded = await loadModel(modelJsonPath);
  const rows = loaded.summary.layers;
  disposeModel(loaded);
  const recipeFile = await readRecipe(modelJsonPath, { rows, modelName: path.basename(modelJsonPath) });
  const shownRecipe = rel(recipeFile.file);
  for (const d of recipeFile.diagnostics) {
    // The editor uses the default until the file is fixed; a run must not: it stops, and says only that.
    if (d.severity === 'error') throw new EngineError('bad-recipe', `${formatDiagnostic(shownRecipe, { ...d, message: d.problem ?? d.message })} Fix the file, or move it away to use the defaults.`);
    if (d.severity === 'warning') process.stderr.write(`layer-lens: ${formatDiagnostic(shownRecipe, d)}\n`);
  }
  const recipe = recipeFile.recipe;
  let frozen = recipe.freeze;
  if (values['freeze-up-to'] !== undefined) {
    try {
      frozen = freezeUpTo(rows, values['freeze-up-to']);
    } catch (e) {
      throw ue(`--freeze-up-to: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const settings: FinetuneSettingsInput = { ...recipe.finetune };
  for (const [k, v] of Object.entries(flags) as [NumberField, number | undefined][]) if (v !== undefined) settings[k] = v;
  if (values.augment !== undefined) settings.augment = parseAugmentFlag(values.augment, recipe.finetune.augment, ue);
  if (patience !== undefined) settings.earlyStopping = { monitor: recipe.finetune.earlyStopping?.monitor ?? 'val_loss', restoreBestWeights: true, ...recipe.finetune.earlyStopping, patience };

  const interrupt = interruptible('stopping after this batch');
  const printer = new ProgressPrinter(ctx.out, process.stderr.isTTY === true);
  try {
    // An ONNX backbone runs in ONNX Runtime; only a new head trains (engine/onnx/finetune.ts).
    await (isOnnxPath(modelJsonPath) ? finetuneOnnx : finetune)({
      modelJsonPath,
      datasetDir,
      settings,
      frozen,
      ...(mode ? { freeze: mode } : {}),
      ...(memoryLimitMB ? { memoryLimitMB } : {}),
      outDir: values.out,
      signal: interrupt.signal,
      onProgress: (p) => printer.handle(p),
    });
    return 0;
  } catch (e) {
    if (e instanceof CancelledError) {
      printer.done();
      process.stderr.write('layer-lens: fine-tuning was cancelled; nothing was written.\n');
      return 130;
    }
    throw e;
  } finally {
    printer.done();
    interrupt.dispose();
  }
}
