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
 * h5wasm is loaded on first use (it is 4 MB of embedded wasm), never at
 * extension activation.
 */
import type * as H5 from 'h5wasm';
import { clipText } from './modelFiles';

type H5Lib = typeof H5;

let lib: Promise<H5Lib> | undefined;
let fileCounter = 0;

/** h5wasm, initialised once, with libhdf5 errors thrown as exceptions. */
export function loadH5wasm(): Promise<H5Lib> {
  lib ??= (async () => {
    const h5 = (await import('h5wasm')) as H5Lib;
    const module = await h5.ready;
    module.activate_throwing_error_handler();
    return h5;
  })();
  return lib;
}

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

/** Runs one h5wasm read of `what`, turning whatever it throws into an Hdf5ReadError. */
function reading<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Hdf5ReadError) throw e;
    throw new Hdf5ReadError(what, clipText(hdf5Reason(e), 200));
  }
}

/** A group of the file, seen through an optional backslash-joined name prefix. */
export interface Hdf5Node {
  readonly kind: 'group';
  /** Slash-separated path for messages ("layers/dense/vars"). */
  readonly path: string;
  readonly group: H5.Group;
  readonly prefix: string;
}

export interface Hdf5Dataset {
  readonly kind: 'dataset';
  readonly path: string;
  readonly shape: number[];
  /** "float32", "float64", or a description of what it holds instead. */
  readonly type: string;
  readonly dataset: H5.Dataset;
}

export class Hdf5File {
  private readonly keyCache = new Map<string, string[]>();
  private closed = false;

  private constructor(
    private readonly h5: H5Lib,
    private readonly file: H5.File,
    private readonly memName: string,
  ) {}

  /** Opens `bytes` as HDF5; throws an Error whose message is libhdf5's reason. */
  static async open(bytes: Uint8Array): Promise<Hdf5File> {
    const h5 = await loadH5wasm();
    const fs = h5.FS as unknown as { writeFile(p: string, d: Uint8Array): void; unlink(p: string): void };
    const memName = `/layerlens-${process.pid}-${++fileCounter}.h5`;
    fs.writeFile(memName, bytes);
    try {
      const file = new h5.File(memName, 'r');
      return new Hdf5File(h5, file, memName);
    } catch (e) {
      fs.unlink(memName);
      throw new Error(hdf5Reason(e));
    }
  }

  /** Never throws: closing a damaged file can fail in libhdf5, and there is nothing left to do about it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.file.close();
    } catch {
      // libhdf5 could not flush or free a damaged file's structures; the memory file goes anyway
    }
    try {
      (this.h5.FS as unknown as { unlink(p: string): void }).unlink(this.memName);
    } catch {
      // already gone
    }
  }

  root(): Hdf5Node {
    return { kind: 'group', path: '', group: this.file, prefix: '' };
  }

  private keys(group: H5.Group, path: string): string[] {
    let k = this.keyCache.get(group.path);
    if (!k) {
      k = reading(pathText(path), () => group.keys());
      this.keyCache.set(group.path, k);
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
    const keys = this.keys(node.group, node.path);
    const path = node.path ? `${node.path}/${part}` : part;
    if (keys.includes(key)) {
      const e = reading(pathText(path), () => node.group.get(key));
      if (e instanceof this.h5.Group) return { kind: 'group', path, group: e, prefix: '' };
      if (e instanceof this.h5.Dataset) return reading(pathText(path), () => this.describe(e, path));
      return undefined; // external or broken links, named datatypes: not weights
    }
    if (keys.some((k) => k.startsWith(`${key}\\`))) return { kind: 'group', path, group: node.group, prefix: key };
    return undefined;
  }

  /** Names directly under `node` (first segments of backslash-joined names too), in the file's order. */
  children(node: Hdf5Node): string[] {
    const out = new Set<string>();
    for (const k of this.keys(node.group, node.path)) {
      if (node.prefix) {
        if (k.startsWith(`${node.prefix}\\`)) out.add(k.slice(node.prefix.length + 1).split('\\')[0]);
      } else out.add(k.split('\\')[0]);
    }
    return [...out];
  }

  private describe(d: H5.Dataset, path: string): Hdf5Dataset {
    const m = d.metadata;
    let type: string;
    if (m.type === 1 /* H5T_FLOAT */ && (m.size === 4 || m.size === 8)) type = m.size === 4 ? 'float32' : 'float64';
    else if (m.type === 1) type = `float${m.size * 8}`;
    else if (m.type === 0 /* H5T_INTEGER */) type = `${m.signed ? 'int' : 'uint'}${m.size * 8}`;
    else type = `HDF5 type class ${m.type}`;
    if (m.type === 1 && !m.littleEndian) type += ' (big-endian)';
    return { kind: 'dataset', path, shape: d.shape ?? [], type, dataset: d };
  }

  /** A float32/float64 dataset's values as float32 (the caller checked its type and size). */
  readFloats(d: Hdf5Dataset): Float32Array {
    const v = reading(pathText(d.path), () => d.dataset.value);
    if (v instanceof Float32Array) return v;
    if (v instanceof Float64Array) return Float32Array.from(v);
    if (typeof v === 'number') return Float32Array.of(v); // a scalar dataset
    throw new Error(`${d.path} did not read as floating-point values`);
  }

  /**
   * An attribute as text or a list of texts (HDF5 fixed- or variable-length
   * strings, as h5py writes them); an empty numeric array (h5py's empty list)
   * is an empty list. Undefined when absent or of another kind.
   */
  attr(node: Hdf5Node, name: string): string | string[] | undefined {
    if (node.prefix) return undefined; // a backslash prefix is not a real group
    const where = `the attribute "${clipText(name)}" of ${pathText(node.path)}`;
    const attrs = reading(where, () => node.group.attrs);
    if (!Object.prototype.hasOwnProperty.call(attrs, name)) return undefined;
    const v = reading(where, () => attrs[name].value);
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return new TextDecoder().decode(v);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    if (ArrayBuffer.isView(v) && (v as unknown as { length: number }).length === 0) return [];
    return undefined;
  }
}
