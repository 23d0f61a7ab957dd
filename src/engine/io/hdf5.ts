/**
 * Read-only access to an HDF5 file held in memory, for Keras weights. Uses
 * h5wasm (the HDF5 C library compiled to WebAssembly): the bytes are copied
 * into its in-memory file system under a name of our own, so nothing the file
 * says (external links, external storage) can reach the real disk, and
 * libhdf5's errors become exceptions instead of text on stderr.
 *
 * Keras 2.13–2.15 on Windows wrote group names with backslashes
 * ("layers\\dense" as one link name); a node here is a group plus a name
 * prefix, so `child(root, 'layers')` then `child(…, 'dense')` finds both
 * spellings.
 *
 * libhdf5 runs in a helper thread (src/worker/hdf5Helper.ts), started on
 * first use (h5wasm is 4 MB of embedded wasm; never at extension activation)
 * and kept for the next file. Each read waits for its reply synchronously
 * with a time limit: a damaged file whose structures send libhdf5 round in a
 * loop ends in an Hdf5ReadError and a stopped helper, not in a hung worker.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { EngineError } from '../errors';
import { clipText } from './files';

/** libhdf5's error stack, reduced to its innermost cause ("bad byte number in an address"). */
export function hdf5Reason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const causes = [...text.matchAll(/#\d+:.* in [^(]*\(\): ([^\n]+)/g)].map((m) => m[1].trim());
  const reason = causes.length > 0 ? causes[causes.length - 1] : text.split('\n')[0];
  return reason.length > 200 ? `${reason.slice(0, 200)}…` : reason;
}

/**
 * libhdf5 could not read a part of an opened file: a damaged B-tree, heap or
 * object header, a link that loops, dangles or leads to another file. `where`
 * is the slash-separated path being read ("" for the root group), `reason`
 * libhdf5's innermost cause. Every read of Hdf5File throws this, never
 * h5wasm's multi-line error stack.
 */
export class Hdf5ReadError extends Error {
  constructor(
    /** What was being read, as a message shows it: "model_weights/conv", the root group, the attribute "model_config" of the root group. */
    readonly what: string,
    readonly reason: string,
  ) {
    super(`reading ${what} failed (${reason})`);
    this.name = 'Hdf5ReadError';
  }
}

/** A path of the file as a message shows it (names come from the file: escaped, clipped). */
const pathText = (path: string) => (path ? `"${clipText(path)}"` : 'the root group');


/** A group of the file, seen through an optional backslash-joined name prefix. */
export interface Hdf5Node {
  readonly kind: 'group';
  /** Slash-separated path for messages ("layers/dense/vars"). */
  readonly path: string;
  /** The group's own path in the file ("/layers/dense"): with a prefix, the group holding the backslash-joined names. */
  readonly groupPath: string;
  readonly prefix: string;
}

export interface Hdf5Dataset {
  readonly kind: 'dataset';
  readonly path: string;
  readonly shape: number[];
  /** "float32", "float64", or a description of what it holds instead. */
  readonly type: string;
  readonly dataPath: string;
}

// ---------------------------------------------------------------------------
// The helper thread (src/worker/hdf5Helper.ts) and its synchronous, time-limited calls

/** A request to the HDF5 helper. */
export type Hdf5Request =
  | { op: 'open'; bytes: Uint8Array }
  | { op: 'keys' | 'get' | 'value' | 'close'; handle: number; path: string }
  | { op: 'attr'; handle: number; path: string; name: string };

/** `fatal`: libhdf5 trapped, and the helper ends after this reply. */
export type Hdf5Reply = { ok: true; value: unknown } | { ok: false; reason: string; fatal?: boolean };

type EntryInfo = { kind: 'group'; path: string } | { kind: 'dataset'; path: string; shape: number[]; meta: { type: number; size: number; signed: boolean; littleEndian: boolean } } | { kind: 'other' };

/** How long one libhdf5 call may take: a few seconds, and more for reading much data. */
export const hdf5Limits = { callMs: 5000, msPerMB: 50 };

/** The helper's entry: dist/hdf5Helper.js next to the bundle; from sources, src/worker/hdf5Helper.ts through tsx. */
function startWorker(workerData: unknown, transfer: MessagePort[]): Worker {
  const bundled = path.join(__dirname, 'hdf5Helper.js');
  if (fs.existsSync(bundled)) return new Worker(bundled, { workerData, transferList: transfer });
  const source = path.resolve(__dirname, '..', '..', 'worker', 'hdf5Helper.ts');
  if (!fs.existsSync(source)) throw new EngineError('internal', `the HDF5 reader is missing (looked for ${bundled}); rebuild the extension.`);
  return new Worker(`require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(source)});`, { eval: true, workerData, transferList: transfer });
}

class Hdf5Helper {
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));
  private readonly port: MessagePort;
  private readonly worker: Worker;
  /** Why it can no longer be used, once it cannot. */
  gone?: string;

  private constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = startWorker({ port: port2, signal: this.signal.buffer }, [port2]);
    // It must not keep the process alive, and an exit (terminated after a time limit) is expected.
    this.worker.unref();
    this.worker.on('error', () => undefined);
    this.worker.on('exit', () => (this.gone ??= 'the HDF5 reader stopped'));
  }

  /** A started helper (h5wasm loaded in it), or the reason it did not start. */
  static async start(): Promise<Hdf5Helper> {
    const h = new Hdf5Helper();
    // Starting compiles 4 MB of wasm: waited for without blocking, then its "ready" (request 0) is taken.
    const deadline = Date.now() + 60_000;
    while (Atomics.load(h.signal, 0) === 0) {
      if (h.gone || Date.now() > deadline) {
        h.stop(h.gone ?? 'the HDF5 reader did not start within 60 s');
        throw new EngineError('internal', `${h.gone}.`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const r = h.reply(0, deadline);
    if (!r?.ok) {
      const why = r ? r.reason : 'it did not answer';
      h.stop(why);
      throw new EngineError('internal', `the HDF5 reader did not start (${why}).`);
    }
    return h;
  }

  private seq = 0;

  /**
   * The reply to request `id`, waiting (synchronously) until `deadline`;
   * undefined when none came. Replies to earlier requests still queued are
   * dropped, and the signal only wakes this thread: the reply is taken from
   * the port, so a signal seen before its message is not mistaken for it.
   */
  private reply(id: number, deadline: number): Hdf5Reply | undefined {
    for (;;) {
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        const r = m.message as Hdf5Reply & { id: number };
        if (r.id === id) return r;
      }
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      Atomics.store(this.signal, 0, 0);
      // Re-check after clearing the signal: the reply may have come in between.
      const m = receiveMessageOnPort(this.port);
      if (m && (m.message as { id: number }).id === id) return m.message as Hdf5Reply;
      Atomics.wait(this.signal, 0, 0, Math.min(left, 20));
    }
  }

  /** One request, waited for synchronously; throws Hdf5ReadError about `what` when libhdf5 fails or does not finish in time. */
  call(what: string, req: Hdf5Request, ms = hdf5Limits.callMs, transfer: ArrayBuffer[] = []): unknown {
    if (this.gone) throw new Hdf5ReadError(what, this.gone);
    const id = ++this.seq;
    this.port.postMessage({ ...req, id }, transfer);
    const r = this.reply(id, Date.now() + ms);
    if (!r) {
      const reason = `libhdf5 was still reading after ${Math.round(ms / 1000)} s; its structures may point round in a loop`;
      this.stop(reason);
      throw new Hdf5ReadError(what, reason);
    }
    if (!r.ok) {
      if (r.fatal) this.gone ??= 'the HDF5 reader stopped after libhdf5 crashed on another file';
      throw new Hdf5ReadError(what, clipText(r.reason, 200));
    }
    return r.value;
  }

  stop(why: string): void {
    this.gone ??= why;
    void this.worker.terminate();
    this.port.close();
  }
}

let helper: Promise<Hdf5Helper> | undefined;

/** The running helper, started on first use and again after one was stopped. */
async function currentHelper(): Promise<Hdf5Helper> {
  const h = helper ? await helper.catch(() => undefined) : undefined;
  if (h && !h.gone) return h;
  helper = Hdf5Helper.start();
  helper.catch(() => (helper = undefined));
  return helper;
}

/**
 * An HDF5 file opened in the helper thread. Every read is a synchronous call
 * with a time limit; whatever libhdf5 says or does (an error, a loop) becomes
 * an Hdf5ReadError naming what was being read.
 */
export class Hdf5File {
  private readonly keyCache = new Map<string, string[]>();
  private closed = false;

  private constructor(
    private readonly helper: Hdf5Helper,
    private readonly handle: number,
    /** Bytes of the file: what it can hold, whatever its datasets' shapes claim. */
    readonly size: number,
  ) {}

  /**
   * Opens `bytes` as HDF5; throws an Error whose message is libhdf5's reason.
   * Takes the bytes: when they fill their buffer it moves to the reader
   * thread (a 2 GB file is not copied once more), leaving `bytes` empty.
   */
  static async open(bytes: Uint8Array): Promise<Hdf5File> {
    const h = await currentHelper();
    const size = bytes.length;
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
    try {
      const handle = h.call('the file', { op: 'open', bytes }, hdf5Limits.callMs + (size / 1048576) * hdf5Limits.msPerMB, whole ? [bytes.buffer as ArrayBuffer] : []) as number;
      return new Hdf5File(h, handle, size);
    } catch (e) {
      throw new Error(e instanceof Hdf5ReadError ? e.reason : hdf5Reason(e));
    }
  }

  /** Never throws: closing a damaged file can fail in libhdf5, and there is nothing left to do about it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.helper.call('the file', { op: 'close', handle: this.handle, path: '/' });
    } catch {
      // libhdf5 could not free a damaged file's structures, or the helper was stopped; the memory file goes with it
    }
  }

  root(): Hdf5Node {
    return { kind: 'group', path: '', groupPath: '/', prefix: '' };
  }

  private keys(groupPath: string, path: string): string[] {
    let k = this.keyCache.get(groupPath);
    if (!k) {
      k = this.helper.call(pathText(path), { op: 'keys', handle: this.handle, path: groupPath }) as string[];
      this.keyCache.set(groupPath, k);
    }
    return k;
  }

  /** The group or dataset `name` under `node` (names split on "/" are walked), or undefined. */
  child(node: Hdf5Node, name: string): Hdf5Node | Hdf5Dataset | undefined {
    let at: Hdf5Node | Hdf5Dataset | undefined = node;
    for (const part of name.split('/').filter((p) => p.length > 0)) {
      if (!at || at.kind !== 'group') return undefined;
      at = this.step(at, part);
    }
    return at;
  }

  /** A group under `node`, or undefined when absent or not a group. */
  group(node: Hdf5Node, name: string): Hdf5Node | undefined {
    const c = this.child(node, name);
    return c?.kind === 'group' ? c : undefined;
  }

  private step(node: Hdf5Node, part: string): Hdf5Node | Hdf5Dataset | undefined {
    const key = node.prefix ? `${node.prefix}\\${part}` : part;
    const keys = this.keys(node.groupPath, node.path);
    const path = node.path ? `${node.path}/${part}` : part;
    if (keys.includes(key)) {
      const full = node.groupPath === '/' ? `/${key}` : `${node.groupPath}/${key}`;
      const e = this.helper.call(pathText(path), { op: 'get', handle: this.handle, path: full }) as EntryInfo;
      if (e.kind === 'group') return { kind: 'group', path, groupPath: e.path, prefix: '' };
      if (e.kind === 'dataset') return { kind: 'dataset', path, shape: e.shape, type: typeName(e.meta), dataPath: e.path };
      return undefined; // external or broken links, named datatypes: not weights
    }
    if (keys.some((k) => k.startsWith(`${key}\\`))) return { kind: 'group', path, groupPath: node.groupPath, prefix: key };
    return undefined;
  }

  /** Names directly under `node` (first segments of backslash-joined names too), in the file's order. */
  children(node: Hdf5Node): string[] {
    const out = new Set<string>();
    for (const k of this.keys(node.groupPath, node.path)) {
      if (node.prefix) {
        if (k.startsWith(`${node.prefix}\\`)) out.add(k.slice(node.prefix.length + 1).split('\\')[0]);
      } else out.add(k.split('\\')[0]);
    }
    return [...out];
  }

  /** A float or integer dataset's values as float32 (the caller checked its type and size). */
  readFloats(d: Hdf5Dataset): Float32Array {
    const bytes = d.shape.reduce((a, n) => a * n, 1) * 8;
    const v = this.helper.call(pathText(d.path), { op: 'value', handle: this.handle, path: d.dataPath }, hdf5Limits.callMs + (bytes / 1048576) * hdf5Limits.msPerMB);
    if (v instanceof Float32Array) return v;
    if (v instanceof Float64Array) return Float32Array.from(v);
    if (typeof v === 'number') return Float32Array.of(v); // a scalar dataset
    if (typeof v === 'bigint') return Float32Array.of(Number(v)); // a scalar int64 (Normalization's count)
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Float32Array.from(v as unknown as ArrayLike<number | bigint>, Number);
    throw new Error(`${d.path} did not read as numbers`);
  }

  /**
   * An attribute as text or a list of texts (HDF5 fixed- or variable-length
   * strings, as h5py writes them); an empty numeric array (h5py's empty list)
   * is an empty list. Undefined when absent or of another kind.
   */
  attr(node: Hdf5Node, name: string): string | string[] | undefined {
    if (node.prefix) return undefined; // a backslash prefix is not a real group
    const v = this.helper.call(`the attribute "${clipText(name)}" of ${pathText(node.path)}`, { op: 'attr', handle: this.handle, path: node.groupPath, name });
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return new TextDecoder().decode(v);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    if (typeof v === 'object' && v !== null && (v as { length?: number }).length === 0) return [];
    return undefined;
  }
}

function typeName(m: { type: number; size: number; signed: boolean; littleEndian: boolean }): string {
  let type: string;
  if (m.type === 1 /* H5T_FLOAT */ && (m.size === 4 || m.size === 8)) type = m.size === 4 ? 'float32' : 'float64';
  else if (m.type === 1) type = `float${m.size * 8}`;
  else if (m.type === 0 /* H5T_INTEGER */) type = `${m.signed ? 'int' : 'uint'}${m.size * 8}`;
  else type = `HDF5 type class ${m.type}`;
  if (m.type === 1 && !m.littleEndian) type += ' (big-endian)';
  return type;
}
