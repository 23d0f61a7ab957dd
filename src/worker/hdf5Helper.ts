/**
 * The HDF5 helper: a worker_threads entry that owns h5wasm (libhdf5 compiled
 * to WebAssembly) for the Keras reader (src/engine/io/hdf5.ts). A damaged
 * file can send libhdf5 into a loop that never returns (a B-tree or heap that
 * points back into itself); here that costs only this thread, which the
 * reader terminates after its time limit, instead of the compute worker and
 * every model it holds.
 *
 * Requests arrive on a MessagePort; each reply is posted on it and then
 * signalled through a shared Int32Array, so the reader can wait for it
 * synchronously (Atomics.wait) with a time limit.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import type * as H5 from 'h5wasm';
import { hdf5Reason, type Hdf5Reply, type Hdf5Request } from '../engine/io/hdf5';
import { loadH5wasm } from '../engine/io/h5wasm';

const { port, signal } = workerData as { port: MessagePort; signal: SharedArrayBuffer };
const flag = new Int32Array(signal);

/** WebAssembly.RuntimeError: what a trap in wasm code throws. */
const wasmTrap = (globalThis as unknown as { WebAssembly: { RuntimeError: new () => Error } }).WebAssembly.RuntimeError;

const files = new Map<number, { file: H5.File; memName: string }>();
let nextHandle = 0;

/** The request being answered (0: the "ready" sent once h5wasm is loaded). */
let current = 0;

function reply(r: Hdf5Reply, transfer: ArrayBuffer[] = []): void {
  port.postMessage({ ...r, id: current }, transfer);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function fileOf(handle: number): H5.File {
  const f = files.get(handle);
  if (!f) throw new Error('the file is not open');
  return f.file;
}

void (async () => {
  const h5 = await loadH5wasm();
  const FS = h5.FS as unknown as { writeFile(p: string, d: Uint8Array): void; unlink(p: string): void };
  port.on('message', (m: Hdf5Request & { id: number }) => {
    current = m.id;
    try {
      switch (m.op) {
        case 'open': {
          const memName = `/layerlens-${++nextHandle}.h5`;
          FS.writeFile(memName, m.bytes);
          try {
            files.set(nextHandle, { file: new h5.File(memName, 'r'), memName });
          } catch (e) {
            FS.unlink(memName);
            throw e;
          }
          return reply({ ok: true, value: nextHandle });
        }
        case 'keys':
          return reply({ ok: true, value: (fileOf(m.handle).get(m.path) as H5.Group).keys() });
        case 'get': {
          const file = fileOf(m.handle);
          // Soft links are not followed: Keras never writes them, and one pointing at an ancestor makes the tree endless.
          if (typeof file.get_link(m.path) === 'string') return reply({ ok: true, value: { kind: 'other' } });
          const e = file.get(m.path);
          if (e instanceof h5.Group) return reply({ ok: true, value: { kind: 'group', path: e.path } });
          if (e instanceof h5.Dataset) {
            const { type, size, signed, littleEndian } = e.metadata;
            return reply({ ok: true, value: { kind: 'dataset', path: e.path, shape: e.shape ?? [], meta: { type, size, signed, littleEndian } } });
          }
          return reply({ ok: true, value: { kind: 'other' } }); // external or broken links, named datatypes
        }
        case 'value': {
          const v = (fileOf(m.handle).get(m.path) as H5.Dataset).value;
          if (ArrayBuffer.isView(v)) {
            const own = v.byteOffset === 0 && v.byteLength === v.buffer.byteLength ? v : (v as unknown as Float32Array).slice();
            return reply({ ok: true, value: own }, [own.buffer as ArrayBuffer]);
          }
          return reply({ ok: true, value: typeof v === 'number' ? v : null });
        }
        case 'attr': {
          const attrs = (fileOf(m.handle).get(m.path) as H5.Group).attrs;
          if (!Object.prototype.hasOwnProperty.call(attrs, m.name)) return reply({ ok: true, value: undefined });
          const v = attrs[m.name].value;
          const plain = typeof v === 'string' || v instanceof Uint8Array || (Array.isArray(v) && v.every((s) => typeof s === 'string')) ? v : ArrayBuffer.isView(v) ? { length: (v as unknown as { length: number }).length } : null;
          return reply({ ok: true, value: plain });
        }
        case 'close': {
          const f = files.get(m.handle);
          files.delete(m.handle);
          if (f) {
            try {
              f.file.close();
            } finally {
              FS.unlink(f.memName);
            }
          }
          return reply({ ok: true, value: null });
        }
      }
    } catch (e) {
      // A trap inside libhdf5 (an out-of-bounds access on damaged structures) leaves it in no known state: answer, then end
      // this thread, and the reader starts a fresh one for the next file.
      const trapped = e instanceof wasmTrap;
      reply({ ok: false, reason: trapped ? `libhdf5 crashed on its damaged structures: ${(e as Error).message}` : hdf5Reason(e), fatal: trapped });
      if (trapped) process.exit(0);
    }
  });
  reply({ ok: true, value: 'ready' });
})().catch((e: unknown) => reply({ ok: false, reason: `h5wasm did not start: ${hdf5Reason(e)}` }));
