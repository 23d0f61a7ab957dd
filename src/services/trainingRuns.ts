/**
 * Training runs in the worker (fine-tune and the rotation pretext), one per
 * model at a time: `finetune`/`pretext` start one, `stop` stops it (the
 * inspector's Stop button), `onProgress`/`onStopped` tell whoever shows it
 * (the inspector's Training tab). This is the one adapter from a run's
 * progress to the output channel, the progress notification and the panels.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { Logger } from '../logger';
import type { PretextResult } from '../protocol/pretext';
import type { FinetuneSettings } from '../protocol/recipe';
import { augmentSummary, formatBatchLine, formatProgress, withShownPaths, type FinetuneResult, type TrainProgress } from '../protocol/train';
import type { AugmentPreview, RunCard, TrainingSnapshot } from '../protocol/webviewApi';
import type { ModelRegistry } from './modelRegistry';
import { ProgressRuns, type RunProgress } from './progressRuns';

export interface TrainProgressEvent {
  model: vscode.Uri;
  progress: TrainProgress;
}

export interface TrainStoppedEvent {
  model: vscode.Uri;
  status: 'cancelled' | 'failed';
  message: string;
}

export interface TrainCardEvent {
  model: vscode.Uri;
  card: RunCard;
}

/** A result card's action: its label, and what it does (run on the host; the webview only names it by id). */
export interface CardAction {
  id: string;
  label: string;
  run: () => void;
}

/** Batch points kept per run for the chart; a longer run keeps every other one. */
const MAX_BATCH_POINTS = 2000;

/** A model's current or last run, kept so that a Training tab rebuilt (hidden and shown, reopened) draws it again. */
interface RunRecord {
  snapshot: TrainingSnapshot;
  actions: CardAction[];
}

export interface FinetuneRequest {
  model: vscode.Uri;
  dataset: vscode.Uri;
  /** The model's name in the notification. */
  name: string;
  settings: FinetuneSettings;
  frozen: string[];
  /** What to train (see the worker's finetune); absent: the plan. */
  freeze?: 'plan' | 'none' | 'backbone';
  /** Live maps: this image's maps of this layer after every epoch. */
  probe?: { imagePath: string; layerPath: string };
}

export interface PretextRequest {
  model: vscode.Uri;
  images: vscode.Uri;
  name: string;
  epochs: number;
  seed: number;
}

const rel = (p: string) => vscode.workspace.asRelativePath(p);

/** layerLens.memoryLimitMB for a run, when set (0: wasm's own 4 GB). */
function memoryLimit(): { memoryLimitMB?: number } {
  const mb = vscode.workspace.getConfiguration('layerLens').get<number>('memoryLimitMB', 0);
  return mb > 0 ? { memoryLimitMB: mb } : {};
}

export class TrainingRuns implements vscode.Disposable {
  private readonly running = new Map<string, AbortController>();
  private readonly progressed = new vscode.EventEmitter<TrainProgressEvent>();
  private readonly stopped = new vscode.EventEmitter<TrainStoppedEvent>();
  private readonly carded = new vscode.EventEmitter<TrainCardEvent>();
  readonly onProgress = this.progressed.event;
  readonly onStopped = this.stopped.event;
  /** A finished job's result card (its toast's actions), for the Training tab. */
  readonly onCard = this.carded.event;
  private readonly previewed = new vscode.EventEmitter<{ model: vscode.Uri; preview: AugmentPreview }>();
  /** Augmented samples for the settings a Fine-Tune form is about to start with, for the Training tab. */
  readonly onAugmentPreview = this.previewed.event;
  private readonly records = new Map<string, RunRecord>();
  private readonly runs: ProgressRuns;

  constructor(
    private readonly engine: EngineClient,
    private readonly registry: ModelRegistry,
    private readonly log: Logger,
    channel: vscode.LogOutputChannel,
  ) {
    this.runs = new ProgressRuns(log, channel);
  }

  isRunning(model: vscode.Uri): boolean {
    return this.running.has(model.fsPath);
  }

  stop(model: vscode.Uri): void {
    this.running.get(model.fsPath)?.abort();
  }

  /** The model's current or last run, for a Training tab that was rebuilt. */
  snapshot(model: vscode.Uri): TrainingSnapshot | null {
    return this.records.get(model.fsPath)?.snapshot ?? null;
  }

  /**
   * The result card of a finished job (fine-tune, pretext, the advisor): the
   * actions its toast offers, kept on the Training tab until the next run.
   */
  setCard(model: vscode.Uri, title: string, lines: string[], actions: CardAction[], job: TrainingSnapshot['job'] = 'finetune'): void {
    let record = this.records.get(model.fsPath);
    if (!record) {
      record = { snapshot: { job, progress: [], batches: [], running: false }, actions: [] };
      this.records.set(model.fsPath, record);
    }
    const card: RunCard = { title, lines, actions: actions.map(({ id, label }) => ({ id, label })) };
    record.snapshot.card = card;
    record.actions = actions;
    this.carded.fire({ model, card });
  }

  /** Eight augmented samples of `imagePath` with these settings, seeded as training does, at the model's input size (at most 256). */
  async previewAugmentations(model: vscode.Uri, imagePath: string, settings: FinetuneSettings): Promise<AugmentPreview> {
    const summary = await this.registry.summary(model);
    const [, h, w] = summary.inputShape;
    const size = settings.imageSize ?? [typeof h === 'number' && h > 0 ? h : 128, typeof w === 'number' && w > 0 ? w : 128];
    const out = await this.engine.call('augmentPreview', { imagePath, settings: settings.augment, n: 8, seed: settings.seed, height: Math.min(size[0], 256), width: Math.min(size[1], 256) });
    return { summary: augmentSummary(settings.augment), ...out };
  }

  /** Shows augmented samples on the model's Training tab (the Fine-Tune form's Preview). */
  showAugmentPreview(model: vscode.Uri, preview: AugmentPreview): void {
    this.previewed.fire({ model, preview });
  }

  /** Runs a result card's action by id (from the Training tab); unknown ids are refused. */
  runAction(model: vscode.Uri, id: string): void {
    const action = this.records.get(model.fsPath)?.actions.find((a) => a.id === id);
    if (!action) throw new Error(`there is no "${id}" on this model's result card any more`);
    action.run();
  }

  /** Starts a new record: the previous run's card and chart go. */
  private begin(model: vscode.Uri, job: TrainingSnapshot['job']): void {
    this.records.set(model.fsPath, { snapshot: { job, progress: [], batches: [], running: true }, actions: [] });
  }

  private record(model: vscode.Uri, p: TrainProgress): void {
    const snap = this.records.get(model.fsPath)?.snapshot;
    if (!snap) return;
    if (p.type === 'batch') {
      snap.batches.push([p.epoch - 1 + p.batch / Math.max(1, p.batches), p.loss]);
      if (snap.batches.length > MAX_BATCH_POINTS) snap.batches = snap.batches.filter((_, i) => i % 2 === 0);
      return;
    }
    if (p.type === 'probe') {
      // The first probe (before training) and the latest one are what the tab shows.
      const probes = snap.progress.filter((q) => q.type === 'probe');
      if (probes.length >= 2) snap.progress.splice(snap.progress.indexOf(probes[probes.length - 1]), 1);
    }
    snap.progress.push(p);
    if (p.type === 'end') snap.running = false;
  }

  /** Fine-tunes in the worker; the result, or undefined when cancelled or failed (already reported). */
  async finetune(r: FinetuneRequest): Promise<FinetuneResult | undefined> {
    this.log.info(`Fine-tune of ${rel(r.model.fsPath)} on ${rel(r.dataset.fsPath)} started`);
    if (r.probe) this.log.info(`Live maps: ${rel(r.probe.imagePath)} at ${r.probe.layerPath}, after every epoch (within 5% of the training time)`);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const started = performance.now();
    let messages = 0;
    let handlerMax = 0;
    try {
      const result = await this.track(
        r.model,
        {
          title: `Fine-tuning ${r.name}`,
          job: 'finetune',
          cancelledMessage: 'Fine-tuning was cancelled; nothing was saved and the model is unchanged.',
          failedMessage: (reason) => `Fine-tuning failed: ${reason}`,
        },
        (signal, progress) => {
          const report = notificationReporter(progress);
          let lastBatchLog = 0;
          const onProgress = (p: TrainProgress) => {
            const t0 = performance.now();
            this.publish(r.model, p);
            report(p);
            // Batch lines are throttled by the engine; a few per second reach the log at most.
            if (p.type === 'batch' && Date.now() - lastBatchLog > 2000) {
              this.log.debug(formatBatchLine(p));
              lastBatchLog = Date.now();
            }
            messages++;
            handlerMax = Math.max(handlerMax, performance.now() - t0);
          };
          return this.engine.call(
            'finetune',
            { modelPath: r.model.fsPath, datasetDir: r.dataset.fsPath, settings: r.settings, frozen: r.frozen, ...(r.freeze ? { freeze: r.freeze } : {}), ...memoryLimit(), ...(r.probe ? { probe: r.probe } : {}) },
            { signal, onProgress },
          );
        },
      );
      if (!result) return undefined;
      // A developer's measurement (scripts/benchHostLoop.ts reads it), not the user's news.
      this.log.debug(
        `Extension host event loop during the run: max delay ${(loop.max / 1e6).toFixed(0)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms, mean ${(loop.mean / 1e6).toFixed(1)} ms over ${((performance.now() - started) / 1000).toFixed(1)} s (${messages} progress messages, each handled in at most ${handlerMax.toFixed(1)} ms)`,
      );
      return result;
    } finally {
      loop.disable();
    }
  }

  /** Rotation pretext pretraining in the worker; the result, or undefined when cancelled or failed (already reported). */
  async pretext(r: PretextRequest): Promise<PretextResult | undefined> {
    this.log.info(`Rotation pretext pretraining of ${rel(r.model.fsPath)} on ${rel(r.images.fsPath)} started`);
    return this.track(
      r.model,
      { title: `Rotation pretext: ${r.name}`, job: 'pretext', stoppedMessage: 'Pretraining stopped; nothing was saved.' },
      (signal, progress) =>
        this.engine.call(
          'pretrainRotation',
          { modelPath: r.model.fsPath, imagesDir: r.images.fsPath, settings: { epochs: r.epochs, seed: r.seed }, ...memoryLimit() },
          {
            signal,
            onProgress: (p: TrainProgress) => {
              this.publish(r.model, p);
              if (p.type === 'batch') progress.report({ message: formatBatchLine(p) });
            },
          },
        ),
    );
  }

  /** One progress message: its lines to the log, the message to the panels and the run's record. */
  private publish(model: vscode.Uri, p: TrainProgress): void {
    for (const l of formatProgress(p, rel)) this.log.info(l);
    const shown = withShownPaths(p, rel);
    this.record(model, shown);
    this.progressed.fire({ model, progress: shown });
  }

  /** Runs `work` as the model's training run: registered for stop(), holding the model, its end told to the panels. */
  private async track<T>(
    model: vscode.Uri,
    o: { title: string; job: TrainingSnapshot['job']; cancelledMessage?: string; failedMessage?: (reason: string) => string; stoppedMessage?: string },
    work: (signal: AbortSignal, progress: RunProgress) => Promise<T>,
  ): Promise<T | undefined> {
    const controller = new AbortController();
    this.running.set(model.fsPath, controller);
    this.begin(model, o.job);
    const hold = this.registry.hold(model);
    try {
      const outcome = await this.runs.run({ ...o, controller }, work);
      if (outcome.status === 'done') return outcome.value;
      const stopped = { status: o.stoppedMessage ? ('cancelled' as const) : outcome.status, message: o.stoppedMessage ?? outcome.message };
      const snap = this.records.get(model.fsPath)?.snapshot;
      if (snap) {
        snap.running = false;
        snap.stopped = stopped;
      }
      this.stopped.fire({ model, ...stopped });
      return undefined;
    } finally {
      hold.dispose();
      this.running.delete(model.fsPath);
    }
  }

  dispose(): void {
    this.runs.dispose();
    this.progressed.dispose();
    this.stopped.dispose();
    this.carded.dispose();
    this.previewed.dispose();
  }
}

/** A fine-tune's progress in its notification: the batch line and the fraction done. */
function notificationReporter(progress: RunProgress): (p: TrainProgress) => void {
  let lastFraction = 0;
  return (p) => {
    if (p.type === 'batch') {
      const fraction = (p.epoch - 1 + p.batch / p.batches) / p.epochs;
      progress.report({ message: formatBatchLine(p), increment: Math.max(0, (fraction - lastFraction) * 100) });
      lastFraction = fraction;
    } else if (p.type === 'start') {
      progress.report({ message: `${p.trainSize} train / ${p.valSize} val images, ${p.epochs} epochs` });
    }
  };
}
