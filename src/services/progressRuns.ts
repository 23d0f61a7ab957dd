/**
 * Long work behind a cancellable progress notification: one AbortController
 * per run, bridged from the notification's Cancel (and from dispose, when
 * the extension shuts down), cancel told apart from failure, failures logged
 * and shown with "Show Log". Training runs, embeddings and the advisor all
 * run through here.
 */
import * as vscode from 'vscode';
import type { Logger } from '../logger';
import { RemoteError } from '../protocol/rpc';

export type RunProgress = vscode.Progress<{ message?: string; increment?: number }>;

export type RunOutcome<T> = { status: 'done'; value: T } | { status: 'cancelled' | 'failed'; message: string };

export interface RunOptions {
  /** The notification's title. */
  title: string;
  /** Aborts the run from elsewhere (a Stop button); a fresh one by default. */
  controller?: AbortController;
  /** Logged when the run was cancelled (default "<title>: cancelled."). */
  cancelledMessage?: string;
  /** Logged and shown when the run failed (default "<title> failed: <reason>"). */
  failedMessage?: (reason: string) => string;
}

export function isCancel(e: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (e instanceof RemoteError && e.code === 'cancelled');
}

export class ProgressRuns implements vscode.Disposable {
  private readonly running = new Set<AbortController>();

  constructor(
    private readonly log: Logger,
    private readonly channel: vscode.LogOutputChannel,
  ) {}

  async run<T>(o: RunOptions, work: (signal: AbortSignal, progress: RunProgress) => Promise<T>): Promise<RunOutcome<T>> {
    const controller = o.controller ?? new AbortController();
    this.running.add(controller);
    try {
      const value = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: o.title, cancellable: true }, async (progress, token) => {
        token.onCancellationRequested(() => controller.abort());
        return work(controller.signal, progress);
      });
      return { status: 'done', value };
    } catch (e) {
      if (isCancel(e, controller.signal)) {
        const message = o.cancelledMessage ?? `${o.title}: cancelled.`;
        this.log.info(message);
        return { status: 'cancelled', message };
      }
      const reason = e instanceof Error ? e.message : String(e);
      const message = o.failedMessage ? o.failedMessage(reason) : `${o.title} failed: ${reason}`;
      this.log.error(message);
      void vscode.window.showErrorMessage(message, 'Show Log').then((c) => c && this.channel.show(true));
      return { status: 'failed', message };
    } finally {
      this.running.delete(controller);
    }
  }

  dispose(): void {
    for (const c of this.running) c.abort();
  }
}
