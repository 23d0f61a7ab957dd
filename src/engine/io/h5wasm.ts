/**
 * h5wasm (libhdf5 compiled to WebAssembly, 4 MB), loaded on first use. Only
 * the HDF5 helper thread (src/worker/hdf5Helper.ts) and the tests' Keras
 * writer import this; the engine reads HDF5 through the helper (hdf5.ts), so
 * the compute worker's bundle does not carry it.
 */
import type * as H5 from 'h5wasm';

export type H5Lib = typeof H5;

let lib: Promise<H5Lib> | undefined;

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
