/**
 * The extension host's handle on the compute worker. The worker starts on the
 * first request (so activation stays fast), is terminated on dispose, and is
 * replaced by a fresh one on the next request if it dies (out of memory, a
 * crash). A cancelled request that the worker does not give up within a grace
 * period gets the worker terminated. No vscode import: tests and the CLI can
 * use it too.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { isRpcMessage, RemoteError, RpcClient, type CallOptions } from './protocol/rpc';
import type { BackendPreference, BackendReport, WorkerApi } from './protocol/workerApi';

export interface EngineClientOptions {
  /** Folder holding worker.js and the wasm binaries. */
  distDir: string;
  backend: () => BackendPreference;
  /** Folder that paths in error messages are shown relative to. */
  displayRoot?: () => string | undefined;
  /** The extension's own storage folder: caches go there when a model's folder cannot be written. */
  storageDir?: string;
  log: { info(m: string): void; warn(m: string): void; error(m: string): void };
  onBackend?: (report: BackendReport) => void;
  onBusy?: (busy: boolean) => void;
  /** Heap limit of the worker, so a huge model kills the worker, not the editor. */
  maxHeapMb?: number;
  cancelGraceMs?: number;
}

/** Per call: a time limit, after which the worker is restarted and the call rejects with code "timeout". */
export interface TimeoutOption {
  timeoutMs?: number;
  /** The user-facing message on timeout (default: "<method> took longer than N s; …"). */
  timeoutMessage?: string;
}

interface Running {
  worker: Worker;
  rpc: RpcClient<WorkerApi>;
  ready: Promise<BackendReport>;
}

export class EngineClient {
  private running: Running | undefined;
  private disposed = false;
  private busy = 0;
  private readonly backendListeners = new Set<(report: BackendReport) => void>();

  constructor(private readonly options: EngineClientOptions) {}

  get started(): boolean {
    return this.running !== undefined;
  }

  private start(): Running {
    if (this.running) return this.running;
    if (this.disposed) throw new RemoteError('disposed', 'Layer Lens is shutting down.');
    const worker = new Worker(path.join(this.options.distDir, 'worker.js'), {
      resourceLimits: { maxOldGenerationSizeMb: this.options.maxHeapMb ?? 8192 },
      stdout: false,
      stderr: true,
    });
    const rpc = new RpcClient<WorkerApi>({ post: (m, t) => worker.postMessage(m, t ?? []) });
    worker.on('message', (m: unknown) => {
      if (isRpcMessage(m)) rpc.handle(m);
    });
    worker.stderr?.on('data', (d: Buffer) => this.options.log.warn(`worker: ${d.toString().trimEnd()}`));
    worker.on('error', (e) => this.options.log.error(`The compute worker failed: ${e.message}`));
    worker.on('exit', (code) => {
      if (this.running?.worker !== worker) return;
      this.running = undefined;
      const why = code === 0 ? 'stopped' : `stopped unexpectedly (exit code ${code}; out of memory or a crash)`;
      if (!this.disposed) this.options.log.warn(`The compute worker ${why}; a fresh one starts with the next request.`);
      rpc.failAll(new RemoteError('worker-exit', `The compute worker ${why}. Try again; a fresh worker will start.`));
    });
    const ready = rpc.call('init', { prefer: this.options.backend(), wasmDir: this.options.distDir, displayRoot: this.options.displayRoot?.(), storageDir: this.options.storageDir }).then((report) => {
      this.options.onBackend?.(report);
      for (const l of this.backendListeners) l(report);
      return report;
    });
    ready.catch(() => undefined);
    this.running = { worker, rpc, ready };
    return this.running;
  }

  /** Called with the backend each time a worker has started (the first request, and after a restart). */
  onBackend(listener: (report: BackendReport) => void): { dispose(): void } {
    this.backendListeners.add(listener);
    return { dispose: () => this.backendListeners.delete(listener) };
  }

  async backend(): Promise<BackendReport> {
    return this.start().ready;
  }

  async call<K extends keyof WorkerApi & string>(
    method: K,
    params: WorkerApi[K]['params'],
    options: CallOptions<WorkerApi[K]['progress']> & TimeoutOption = {},
  ): Promise<WorkerApi[K]['result']> {
    const running = this.start();
    this.setBusy(+1);
    let timer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    // A pathological file can keep the worker busy for ever: past the limit,
    // the call fails and the worker is replaced (other calls in flight fail too).
    const timedOut =
      options.timeoutMs === undefined
        ? undefined
        : new Promise<never>((_, reject) => {
            deadline = setTimeout(() => {
              const seconds = Math.round((options.timeoutMs ?? 0) / 100) / 10;
              reject(new RemoteError('timeout', options.timeoutMessage ?? `${method} took longer than ${seconds} s; the compute worker was restarted.`));
              if (this.running === running) {
                this.options.log.warn(`The compute worker did not finish ${method} within ${seconds} s; restarting it.`);
                void this.restart();
              }
            }, options.timeoutMs);
          });
    const onAbort = () => {
      // The worker checks its cancel flag between batches; if it does not
      // answer within the grace period it is stuck in one long kernel.
      timer = setTimeout(() => {
        if (this.running === running) {
          this.options.log.warn(`The compute worker did not stop ${method} within ${this.options.cancelGraceMs ?? 5000} ms; restarting it.`);
          void this.restart();
        }
      }, this.options.cancelGraceMs ?? 5000);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const work = running.ready.then(() => running.rpc.call(method, params, options));
      return await (timedOut ? Promise.race([work, timedOut]) : work);
    } finally {
      if (timer) clearTimeout(timer);
      if (deadline) clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      this.setBusy(-1);
    }
  }

  /** Terminates the worker; the next call starts a fresh one. */
  async restart(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    r.rpc.failAll(new RemoteError('cancelled', 'The compute worker was restarted.'));
    await r.worker.terminate();
  }

  private setBusy(delta: number): void {
    const was = this.busy > 0;
    this.busy += delta;
    if (was !== this.busy > 0) this.options.onBusy?.(this.busy > 0);
  }

  dispose(): void {
    this.disposed = true;
    void this.restart();
  }
}
