/**
 * What a WebAssembly trap means to a user. tfjs-backend-wasm does not check
 * its allocations: when its heap (at most 4 GB in wasm32) cannot grow, the
 * next kernel writes through a null pointer and the module traps with
 * "memory access out of bounds", "table index is out of bounds" or, through
 * emscripten's abort(), "Aborted()" (which emscripten also prints). None of
 * that says what ran out or what to do, and after it the module is in no
 * known state.
 *
 * Layer Lens plans training and inference memory so that this does not
 * happen (src/engine/train/step/memory.ts); if it happens anyway, the error
 * becomes one line, emscripten's own printing is silenced, and the thread
 * that trapped is replaced (the worker exits after answering; the CLI exits).
 */
import { EngineError, messageOf } from './errors';

const TRAP = /table index is out of bounds|memory access out of bounds|^Aborted\(|^unreachable|Cannot enlarge memory/;

/** Whether `e` is a trap of the wasm module (as opposed to an error tfjs or Layer Lens raised). */
export function isWasmTrap(e: unknown): boolean {
  if (!(e instanceof Error) || e instanceof EngineError) return false;
  return e.constructor.name === 'RuntimeError' || TRAP.test(e.message.split('\n')[0]);
}

let trapped = false;

/** Whether this thread's wasm module has trapped (it must not be used again). */
export function wasmTrapped(): boolean {
  return trapped;
}

/** The trap as a user reads it: what ran out and what to do; records that the module is spent. */
export function trapError(e: unknown, during = 'the last task'): EngineError {
  trapped = true;
  return new EngineError(
    'out-of-memory',
    `the compute engine ran out of memory during ${during} (WebAssembly's heap holds at most 4 GB; it stopped with "${messageOf(e).split('\n')[0].slice(0, 80)}"). Use a smaller batch size or input image, freeze more layers, or set layerLens.memoryLimitMB lower so that Layer Lens splits batches sooner; the engine restarts for the next task.`,
  );
}

/** `e`, or its one-line out-of-memory version when it is a wasm trap. */
export function explainTrap(e: unknown, during?: string): unknown {
  return isWasmTrap(e) ? trapError(e, during) : e;
}

let silenced = false;

/**
 * Drops emscripten's "Aborted(...)" lines from console.warn, where the wasm
 * module prints them (it binds console.warn when it starts, so this runs
 * before the backend initialises). The error that follows carries the news.
 */
export function silenceWasmAbortPrinting(): void {
  if (silenced) return;
  silenced = true;
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    const first = typeof args[0] === 'string' ? args[0] : '';
    if (/^Aborted\(/.test(first) || /^exiting due to exception/.test(first)) return;
    warn.apply(console, args as []);
  };
}
