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
import { formatBatchLine, formatProgress, withShownPaths, type FinetuneResult, type TrainProgress } from '../protocol/train';
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
  readonly onProgress = this.progressed.event;
  readonly onStopped = this.stopped.event;
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
          cancelledMessage: 'Fine-tuning was cancelled; nothing was saved and the model is unchanged.',
          failedMessage: (reason) => `Fine-tuning failed: ${reason}`,
        },
        (signal, progress) => {
          const report = notificationReporter(progress);
          let lastBatchLog = 0;
          const onProgress = (p: TrainProgress) => {
            const t0 = performance.now();
            this.publish(r.model, p, (line) => line);
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
      this.log.info(
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
      { title: `Rotation pretext: ${r.name}`, stoppedMessage: 'Pretraining stopped; nothing was saved.' },
      (signal, progress) =>
        this.engine.call(
          'pretrainRotation',
          { modelPath: r.model.fsPath, imagesDir: r.images.fsPath, settings: { epochs: r.epochs, seed: r.seed }, ...memoryLimit() },
          {
            signal,
            onProgress: (p: TrainProgress) => {
              this.publish(r.model, p, (line) => line.replace(/^Fine-tune: /, 'Rotation pretext: '));
              if (p.type === 'batch') progress.report({ message: formatBatchLine(p) });
            },
          },
        ),
    );
  }

  /** One progress message: its lines to the log, the message to the panels. */
  private publish(model: vscode.Uri, p: TrainProgress, line: (l: string) => string): void {
    for (const l of formatProgress(p, rel)) this.log.info(line(l));
    this.progressed.fire({ model, progress: withShownPaths(p, rel) });
  }

  /** Runs `work` as the model's training run: registered for stop(), holding the model, its end told to the panels. */
  private async track<T>(
    model: vscode.Uri,
    o: { title: string; cancelledMessage?: string; failedMessage?: (reason: string) => string; stoppedMessage?: string },
    work: (signal: AbortSignal, progress: RunProgress) => Promise<T>,
  ): Promise<T | undefined> {
    const controller = new AbortController();
    this.running.set(model.fsPath, controller);
    const hold = this.registry.hold(model);
    try {
      const outcome = await this.runs.run({ ...o, controller }, work);
      if (outcome.status === 'done') return outcome.value;
      this.stopped.fire({ model, status: o.stoppedMessage ? 'cancelled' : outcome.status, message: o.stoppedMessage ?? outcome.message });
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
