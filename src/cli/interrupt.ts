/**
 * Ctrl-C in the CLI, one way for every command. The first Ctrl-C asks the
 * work to stop (an AbortSignal: training stops after the batch, nothing is
 * written, exit 130). The second always ends the process at once: every
 * temporary file or folder of ours is removed synchronously, then the
 * process ends by SIGINT itself (the shell sees 130), because Node's own
 * exit waits for its I/O threads and a read stuck in the kernel (a hung
 * network drive) would keep even process.exit() from returning.
 */
import { removeLiveTempsSync } from '../engine/io/atomic';
import { stuckReads } from '../engine/io/safeRead';

/** Ends the process now, by the signal's default action (no exit handlers wait for stuck I/O). */
export function endBySignal(signal: NodeJS.Signals = 'SIGINT'): never {
  removeLiveTempsSync();
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  // The signal is delivered asynchronously; nothing else may run meanwhile.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
}

export interface Interruptible {
  signal: AbortSignal;
  dispose(): void;
}

/** Ctrl-C handling for one command; `stopping` is printed at the first Ctrl-C. */
export function interruptible(stopping?: string): Interruptible {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      process.stderr.write('\r\x1b[2Klayer-lens: interrupted.\n');
      endBySignal();
    }
    controller.abort();
    if (stopping) process.stderr.write(`\r\x1b[2Klayer-lens: ${stopping} (Ctrl-C again to quit at once)…\n`);
  };
  process.on('SIGINT', onSigint);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSigint) };
}

/**
 * Sets the exit code; if a read was given up after its time limit and its
 * thread is still blocked, Node would wait for it at exit for ever, so the
 * process ends by SIGTERM after saying why.
 */
export function finish(code: number): void {
  process.exitCode = code;
  if (stuckReads() > 0) {
    process.stderr.write('layer-lens: a file read that never returned is still blocked in the system; ending the process by signal.\n');
    endBySignal('SIGTERM');
  }
}
