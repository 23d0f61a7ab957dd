/**
 * One small request/reply helper for both channels: host<->worker and
 * host<->webview. A request carries an id; the other side answers once with a
 * result or an error, may send progress for that id in between, and stops
 * work when it receives a cancel for it. No vscode, no Node, no DOM here.
 */

export interface RpcError {
  code: string;
  message: string;
}

export type RpcMessage =
  | { kind: 'request'; id: number; method: string; params: unknown }
  | { kind: 'response'; id: number; ok: true; result: unknown }
  | { kind: 'response'; id: number; ok: false; error: RpcError }
  | { kind: 'progress'; id: number; data: unknown }
  | { kind: 'cancel'; id: number };

/** What a method is: its params, result and progress payload. */
export interface MethodSpec {
  params: unknown;
  result: unknown;
  progress: unknown;
}
export type Api<A> = { [K in keyof A]: MethodSpec };

/** The transport: a worker port, a webview, or a pair of test pipes. */
export interface Port {
  post(message: RpcMessage, transfer?: ArrayBuffer[]): void;
}

export class RemoteError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RemoteError';
  }
}

export interface CallOptions<P> {
  onProgress?: (data: P) => void;
  /** Aborting sends a cancel; the call then rejects with the remote's answer. */
  signal?: AbortSignal;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  onProgress?: (data: unknown) => void;
}

export function isRpcMessage(m: unknown): m is RpcMessage {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as { kind?: unknown; id?: unknown };
  return typeof r.id === 'number' && (r.kind === 'request' || r.kind === 'response' || r.kind === 'progress' || r.kind === 'cancel');
}

export class RpcClient<A extends Api<A>> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly port: Port) {}

  call<K extends keyof A & string>(method: K, params: A[K]['params'], options: CallOptions<A[K]['progress']> = {}): Promise<A[K]['result']> {
    const id = this.nextId++;
    return new Promise<A[K]['result']>((resolve, reject) => {
      if (options.signal?.aborted) {
        reject(new RemoteError('cancelled', `${method} was cancelled.`));
        return;
      }
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onProgress: options.onProgress as ((d: unknown) => void) | undefined });
      options.signal?.addEventListener('abort', () => {
        if (this.pending.has(id)) this.port.post({ kind: 'cancel', id });
      });
      this.port.post({ kind: 'request', id, method, params });
    });
  }

  /** Feed every message from the other side here; returns true if it was ours. */
  handle(message: RpcMessage): boolean {
    const p = this.pending.get(message.id);
    if (!p) return false;
    if (message.kind === 'progress') {
      p.onProgress?.(message.data);
      return true;
    }
    if (message.kind !== 'response') return false;
    this.pending.delete(message.id);
    if (message.ok) p.resolve(message.result);
    else p.reject(new RemoteError(message.error.code, message.error.message));
    return true;
  }

  /** Rejects every call in flight (the other side went away). */
  failAll(error: Error): void {
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  get inFlight(): number {
    return this.pending.size;
  }
}

export interface HandlerContext<P> {
  signal: AbortSignal;
  progress(data: P, transfer?: ArrayBuffer[]): void;
  /** Buffers in the result to transfer instead of copy. */
  transfer(buffers: ArrayBuffer[]): void;
}

export type Handlers<A extends Api<A>> = {
  [K in keyof A]: (params: A[K]['params'], ctx: HandlerContext<A[K]['progress']>) => Promise<A[K]['result']> | A[K]['result'];
};

export class RpcServer<A extends Api<A>> {
  private readonly running = new Map<number, AbortController>();

  constructor(
    private readonly port: Port,
    private readonly handlers: Handlers<A>,
    private readonly toError: (e: unknown) => RpcError,
  ) {}

  async handle(message: RpcMessage): Promise<void> {
    if (message.kind === 'cancel') {
      this.running.get(message.id)?.abort();
      return;
    }
    if (message.kind !== 'request') return;
    const { id, method } = message;
    const handler = Object.prototype.hasOwnProperty.call(this.handlers, method) ? this.handlers[method as keyof A] : undefined;
    if (!handler) {
      this.port.post({ kind: 'response', id, ok: false, error: { code: 'unknown-method', message: `Unknown method ${method}.` } });
      return;
    }
    const controller = new AbortController();
    this.running.set(id, controller);
    let transfer: ArrayBuffer[] = [];
    const ctx: HandlerContext<unknown> = {
      signal: controller.signal,
      progress: (data, t) => this.port.post({ kind: 'progress', id, data }, t),
      transfer: (buffers) => {
        transfer = buffers;
      },
    };
    try {
      const result = await (handler as (p: unknown, c: HandlerContext<unknown>) => unknown)(message.params, ctx);
      this.port.post({ kind: 'response', id, ok: true, result }, transfer);
    } catch (e) {
      this.port.post({ kind: 'response', id, ok: false, error: this.toError(e) });
    } finally {
      this.running.delete(id);
    }
  }
}
