/**
 * The Fine-Tune form: before training, the settings that will be used, each
 * one editable, in one quick pick — what to train (the head only, every
 * layer, the freeze plan, or from a layer on), epochs, learning rate, batch
 * size and augmentations (with a preview on the Training tab) — and Start.
 * The recipe stays the way to keep them: "Save to layerlens.json" writes
 * them. Enter on the first item starts with what is shown.
 */
import * as vscode from 'vscode';
import { freezeUpTo, trainableCounts } from '../protocol/freezePlan';
import { formatCount, type ModelSummary } from '../protocol/model';
import type { AugmentSettings, FinetuneSettings, Recipe } from '../protocol/recipe';
import { augmentSummary } from '../protocol/train';

/** What to train. */
export type TrainChoice =
  | { kind: 'head' }
  | { kind: 'every' }
  | { kind: 'plan' }
  | { kind: 'from'; layer: string };

export interface FinetuneChoice {
  /** The worker's freeze mode and the plan it goes with. */
  freeze: 'plan' | 'none' | 'backbone';
  frozen: string[];
  settings: FinetuneSettings;
}

export interface FormContext {
  summary: ModelSummary;
  recipe: Recipe;
  datasetName: string;
  /** Shows augmented samples of the inspector's image with these settings (on the Training tab). */
  preview: (augment: AugmentSettings) => Promise<void>;
  /** Writes the plan and settings to layerlens.json. */
  save: (recipe: Recipe) => Promise<void>;
}

const augmentKinds = ['flip', 'rotate', 'zoom', 'brightness', 'contrast'] as const;

/** The default choice: an ONNX model or a Teachable Machine export with no plan trains its head (as Teachable Machine does), a plan is used, else every layer. */
export function defaultTrainChoice(summary: ModelSummary, plan: readonly string[]): TrainChoice {
  // ONNX Runtime cannot train, so an ONNX backbone stays frozen whatever a plan says.
  if (summary.onnx) return { kind: 'head' };
  if (plan.length > 0) return { kind: 'plan' };
  return summary.origin === 'teachable-machine' ? { kind: 'head' } : { kind: 'every' };
}

function choiceLabel(c: TrainChoice, summary: ModelSummary, plan: readonly string[]): string {
  const { total } = trainableCounts(summary.layers, []);
  switch (c.kind) {
    case 'head':
      return 'the head only (a new head on the frozen backbone)';
    case 'every':
      return `every layer (${formatCount(total)} params)`;
    case 'plan': {
      const { trainable } = trainableCounts(summary.layers, plan);
      return `the freeze plan (${plan.length} frozen, ${formatCount(trainable)} of ${formatCount(total)} params train)`;
    }
    case 'from':
      return `from ${c.layer} on (the layers before it frozen)`;
  }
}

/** The worker's freeze mode and plan for a choice. */
export function resolveChoice(c: TrainChoice, summary: ModelSummary, plan: readonly string[]): Pick<FinetuneChoice, 'freeze' | 'frozen'> {
  switch (c.kind) {
    case 'head':
      return { freeze: 'backbone', frozen: [] };
    case 'every':
      return { freeze: 'none', frozen: [] };
    case 'plan':
      return { freeze: 'plan', frozen: [...plan] };
    case 'from': {
      // Everything before the layer (in the layer table's order, nested layers included) is frozen.
      const rows = summary.layers;
      const i = rows.findIndex((r) => r.path === c.layer);
      const before = rows.slice(0, Math.max(0, i)).filter((r) => !r.isContainer);
      const last = before[before.length - 1];
      return { freeze: 'plan', frozen: last ? freezeUpTo(rows, last.path) : [] };
    }
  }
}

async function pickTrainChoice(ctx: FormContext, current: TrainChoice): Promise<TrainChoice | undefined> {
  const { summary, recipe } = ctx;
  type Item = vscode.QuickPickItem & { choice?: TrainChoice; from?: boolean };
  const teachable = summary.origin === 'teachable-machine';
  if (summary.onnx) {
    const only: Item = { label: 'The head only', description: 'ONNX', detail: 'The ONNX backbone runs in ONNX Runtime, which cannot train it: a new head trains on its cached outputs and is saved into one .onnx.', choice: { kind: 'head' }, picked: true };
    return (await vscode.window.showQuickPick([only], { title: 'Layer Lens: Fine-Tune — what to train' }))?.choice;
  }
  const items: Item[] = [
    { label: 'The head only', description: teachable ? 'as Teachable Machine does' : '', detail: 'A new head on the frozen backbone; without augmentation the backbone outputs are computed once (seconds per epoch).', choice: { kind: 'head' } },
    { label: 'Every layer', detail: `All ${formatCount(trainableCounts(summary.layers, []).total)} params train (Layer Lens's compiled step: micro-batches when a batch does not fit in memory).`, choice: { kind: 'every' } },
    ...(recipe.freeze.length > 0 ? [{ label: 'The freeze plan', description: 'layerlens.json', detail: choiceLabel({ kind: 'plan' }, summary, recipe.freeze), choice: { kind: 'plan' } as TrainChoice }] : []),
    { label: 'From a layer on…', detail: 'Freeze every layer before the one you pick; it and the layers after it train.', from: true },
  ];
  for (const it of items) if (it.choice && it.choice.kind === current.kind) it.picked = true;
  const picked = await vscode.window.showQuickPick(items, { title: 'Layer Lens: Fine-Tune — what to train', placeHolder: `Currently: ${choiceLabel(current, summary, recipe.freeze)}` });
  if (!picked) return undefined;
  if (picked.choice) return picked.choice;
  const layers = summary.layers.filter((r) => !r.isContainer && r.params > 0);
  const layer = await vscode.window.showQuickPick(
    layers.map((r) => ({ label: `${'  '.repeat(r.depth)}${r.name}`, description: `${r.className} · ${formatCount(r.params)} params`, detail: r.path !== r.name ? r.path : undefined, path: r.path })),
    { title: 'Layer Lens: Fine-Tune — train from which layer on?', placeHolder: 'The layers before it are frozen' },
  );
  return layer ? { kind: 'from', layer: layer.path } : undefined;
}

async function askNumber(title: string, value: number, check: (v: number) => string | undefined): Promise<number | undefined> {
  const text = await vscode.window.showInputBox({
    title: `Layer Lens: Fine-Tune — ${title}`,
    value: String(value),
    validateInput: (t) => {
      const v = Number(t);
      return t.trim() === '' || !Number.isFinite(v) ? 'A number' : check(v);
    },
  });
  return text === undefined ? undefined : Number(text);
}

async function pickAugment(a: AugmentSettings): Promise<AugmentSettings | undefined> {
  const strength = (k: (typeof augmentKinds)[number]) => (k === 'flip' ? 'left-right' : k === 'rotate' ? `up to ${a.rotate.degrees}°` : `up to ${a[k].amount}`);
  const items: (vscode.QuickPickItem & { name: (typeof augmentKinds)[number] })[] = augmentKinds.map((k) => ({ label: k as string, description: strength(k), picked: a[k].enabled, name: k }));
  const picked = await vscode.window.showQuickPick(items, {
    title: 'Layer Lens: Fine-Tune — augmentations (none: the frozen backbone\'s outputs can be cached)',
    canPickMany: true,
    placeHolder: 'Strengths come from layerlens.json ("finetune.augment")',
  });
  if (!picked) return undefined;
  const on = new Set(picked.map((p) => p.name));
  return Object.fromEntries(augmentKinds.map((k) => [k, { ...a[k], enabled: on.has(k) }])) as AugmentSettings;
}

/** Shows the form; the choice when Start is picked, undefined when dismissed. */
export async function finetuneForm(ctx: FormContext): Promise<FinetuneChoice | undefined> {
  const { summary, recipe } = ctx;
  let choice = defaultTrainChoice(summary, recipe.freeze);
  let settings: FinetuneSettings = { ...recipe.finetune };
  type Item = vscode.QuickPickItem & { id: 'start' | 'what' | 'epochs' | 'lr' | 'batch' | 'augment' | 'preview' | 'save' };
  for (;;) {
    const what = choiceLabel(choice, summary, recipe.freeze);
    const augment = augmentSummary(settings.augment);
    const items: Item[] = [
      { id: 'start', label: '$(play) Start training', detail: `${summary.name} on ${ctx.datasetName}: ${what}; ${settings.epochs} epochs, lr ${settings.learningRate}, batch ${settings.batchSize}, augment ${augment}` },
      { id: 'what', label: 'What to train', description: what },
      { id: 'epochs', label: 'Epochs', description: String(settings.epochs) },
      { id: 'lr', label: 'Learning rate', description: String(settings.learningRate) },
      { id: 'batch', label: 'Batch size', description: String(settings.batchSize) },
      { id: 'augment', label: 'Augmentations', description: augment },
      { id: 'preview', label: '$(eye) Preview the augmentations', description: "on the inspector's Training tab" },
      { id: 'save', label: '$(save) Save these settings to layerlens.json', description: 'the recipe keeps them for the next run and the CLI' },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: `Layer Lens: Fine-Tune ${summary.name}`, placeHolder: 'Enter starts; pick a setting to change it', ignoreFocusOut: true });
    if (!picked) return undefined;
    switch (picked.id) {
      case 'start':
        return { ...resolveChoice(choice, summary, recipe.freeze), settings };
      case 'what':
        choice = (await pickTrainChoice(ctx, choice)) ?? choice;
        break;
      case 'epochs':
        settings = { ...settings, epochs: (await askNumber('epochs', settings.epochs, (v) => (Number.isInteger(v) && v >= 1 && v <= 10000 ? undefined : 'A whole number from 1 to 10000'))) ?? settings.epochs };
        break;
      case 'lr':
        settings = { ...settings, learningRate: (await askNumber('learning rate', settings.learningRate, (v) => (v > 0 && v <= 10 ? undefined : 'Above 0, at most 10'))) ?? settings.learningRate };
        break;
      case 'batch':
        settings = { ...settings, batchSize: (await askNumber('batch size', settings.batchSize, (v) => (Number.isInteger(v) && v >= 1 && v <= 4096 ? undefined : 'A whole number from 1 to 4096'))) ?? settings.batchSize };
        break;
      case 'augment':
        settings = { ...settings, augment: (await pickAugment(settings.augment)) ?? settings.augment };
        break;
      case 'preview':
        try {
          await ctx.preview(settings.augment);
        } catch (e) {
          void vscode.window.showWarningMessage(`No preview: ${e instanceof Error ? e.message : String(e)}`);
        }
        break;
      case 'save': {
        const { frozen, freeze } = resolveChoice(choice, summary, recipe.freeze);
        // "The head only" and "every layer" have no plan of their own to save: the plan stays as it is.
        await ctx.save({ ...recipe, freeze: freeze === 'plan' ? frozen : recipe.freeze, finetune: settings });
        void vscode.window.showInformationMessage(`Saved the fine-tune settings${freeze === 'plan' ? ' and the freeze plan' : ''} to layerlens.json.`);
        break;
      }
    }
  }
}
