/**
 * The exclusive lane for tfjs work in one process (the worker, or the CLI).
 * tfjs runs one kernel at a time anyway; what the lane prevents is two async
 * jobs interleaving at their awaits, so that one never disposes tensors the
 * other is still reading (a second inspection arriving while the first
 * awaits a download; a comparison while an inspection reads its maps). The
 * Inspector and the Comparer queue on the same lane.
 */
export class Lane {
  private chain: Promise<unknown> = Promise.resolve();

  /** Runs `fn` once everything queued before it has settled; its result or error is the caller's. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/** The process's one lane. */
export const tfjsLane = new Lane();
