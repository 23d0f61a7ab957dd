/**
 * Reading a Keras file from a stranger: the bytes (bounded), the HDF5 of a
 * `.h5`, or the zip of a `.keras` read in memory by entry name (never
 * extracted; each entry refused by its declared size before it is inflated),
 * into the config and the HDF5 that holds the weights.
 */
import { unzipSync, type UnzipFileInfo } from 'fflate';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { protectModelFiles } from './output';
import { readRegularFile, UnreadableFile } from './safeRead';
import { clipText, parseJsonBounded } from './files';
import { Hdf5File } from './hdf5';

export const kerasLimits = {
  /** The whole file is read into memory (Node reads at most 2 GB at once). */
  maxFileBytes: 2 ** 31 - 1,
  /** config.json inside a .keras (same bound as a model.json). */
  maxConfigBytes: 64 * 1024 * 1024,
  maxMetadataBytes: 1024 * 1024,
  maxWeightsBytes: 2 ** 31 - 1,
  maxZipEntries: 100_000,
  /** Layers per model, and HDF5 groups visited while sizing the weights. */
  maxLayers: 100_000,
};


export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text from the file as a message shows it: one line, control characters escaped, short (a name the config gives as a number or an object too). */
export const clip = (text: unknown, max = 100): string => clipText(typeof text === 'string' ? text : (JSON.stringify(text) ?? String(text)), max);

/** What to do when a Keras file cannot be opened here. */
export function convertHint(abs: string): string {
  return `If Keras opens it, convert it with "tensorflowjs_converter --input_format keras ${path.basename(abs)} out/" and open out/model.json.`;
}

export function shapeText(shape: readonly (number | null)[]): string {
  return `[${clip(shape.join(', '))}]`;
}

export const hdf5Signature = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

export interface KerasSource {
  kind: 'h5' | 'keras';
  config: unknown;
  kerasVersion?: string;
  /** HDF5 holding the weights: the file itself, or model.weights.h5 of the zip. */
  weights: Hdf5File;
}

export async function readBytes(abs: string, shown: string): Promise<{ bytes: Uint8Array; folder: string }> {
  let real: string;
  let st: fs.Stats;
  try {
    real = await fs.promises.realpath(abs);
    st = await fs.promises.stat(real);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new EngineError('unsafe-path', `${shown} is inside a symlink loop; fix the links that point back into the folder.`);
    throw new EngineError('not-found', `${shown} does not exist.`);
  }
  if (!st.isFile()) throw new EngineError('not-a-model', `${shown} is not a file.`);
  if (st.size === 0) throw new EngineError('keras-file', `${shown} is empty (0 bytes); the save may have been interrupted.`);
  if (st.size > kerasLimits.maxFileBytes) {
    throw new EngineError(
      'too-large',
      `${shown} is ${(st.size / 2 ** 30).toFixed(1)} GB; Layer Lens reads Keras files of up to 2 GB into memory. Convert it with "tensorflowjs_converter --input_format keras ${path.basename(abs)} out/" and open out/model.json.`,
    );
  }
  // As io/safeRead.ts reads: an ordinary file, the size stat gave, with a time limit.
  try {
    const bytes = await readRegularFile(real, { shown, maxBytes: kerasLimits.maxFileBytes });
    protectModelFiles([real]);
    return { bytes, folder: path.dirname(real) };
  } catch (e) {
    if (e instanceof UnreadableFile) throw new EngineError('keras-file', e.message);
    throw e;
  }
}

export function startsWith(bytes: Uint8Array, sig: number[]): boolean {
  return bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);
}


async function openHdf5(bytes: Uint8Array, abs: string, shown: string, inner?: string): Promise<Hdf5File> {
  try {
    return await Hdf5File.open(bytes);
  } catch (e) {
    if (e instanceof EngineError) throw e; // the reader itself could not start
    const why = e instanceof Error ? e.message : String(e);
    if (inner) throw new EngineError('keras-file', `${inner} in ${shown} is not a readable HDF5 file (${why}); the archive may be damaged. ${convertHint(abs)}`);
    throw new EngineError('keras-file', `${shown} is a Keras file; Layer Lens could not read it as HDF5 (${why}). ${convertHint(abs)}`);
  }
}

/** The legacy format: config in root attributes, weights under model_weights/. */
export async function readH5(bytes: Uint8Array, abs: string, shown: string): Promise<KerasSource> {
  const h5 = await openHdf5(bytes, abs, shown);
  try {
    const root = h5.root();
    const config = h5.attr(root, 'model_config');
    if (typeof config !== 'string') {
      const stem = path.basename(abs).replace(/\.[^.]*$/, '');
      throw new EngineError(
        'not-a-model',
        `${shown} holds no model architecture (no "model_config" attribute): it was saved with save_weights, or is not a Keras model. Save the whole model with model.save("${stem}.keras") or model.save("${stem}.h5").`,
      );
    }
    if (config.length > kerasLimits.maxConfigBytes) throw new EngineError('too-large', `${shown}: its model_config is ${(config.length / 1048576).toFixed(0)} MB; no real model's is, so it was not parsed.`);
    const version = h5.attr(root, 'keras_version');
    return { kind: 'h5', config: parseJsonBounded(config, `the model_config of ${shown}`), kerasVersion: typeof version === 'string' ? version : undefined, weights: h5 };
  } catch (e) {
    h5.close();
    throw e;
  }
}

/**
 * The .keras zip, read in memory: only config.json, metadata.json and
 * model.weights.h5 at the root are inflated, each refused by its declared size
 * first (fflate inflates into a buffer of exactly that size, so a lying entry
 * is cut short, never larger).
 */
export async function readKerasZip(bytes: Uint8Array, abs: string, shown: string): Promise<KerasSource> {
  const wanted: Record<string, number> = {
    'config.json': kerasLimits.maxConfigBytes,
    'metadata.json': kerasLimits.maxMetadataBytes,
    'model.weights.h5': kerasLimits.maxWeightsBytes,
  };
  const seen = new Set<string>();
  let entries = 0;
  let hasNpz = false;
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, {
      filter: (f: UnzipFileInfo) => {
        if (++entries > kerasLimits.maxZipEntries) {
          throw new EngineError('too-large', `${shown} holds more than ${kerasLimits.maxZipEntries} entries; a Keras archive holds three or four, so it was not read.`);
        }
        if (f.name === 'model.weights.npz') hasNpz = true;
        if (!Object.prototype.hasOwnProperty.call(wanted, f.name)) return false;
        if (seen.has(f.name)) {
          throw new EngineError('keras-file', `${shown} holds two entries named ${f.name}; refused (different zip readers would disagree on which one counts).`);
        }
        seen.add(f.name);
        const limit = wanted[f.name];
        if (f.originalSize > limit || f.size > limit) {
          throw new EngineError(
            'too-large',
            `${shown}: ${f.name} claims ${(Math.max(f.originalSize, f.size) / 1048576).toFixed(0)} MB, more than the ${(limit / 1048576).toFixed(0)} MB Layer Lens accepts; refused before inflating (a zip bomb?).`,
          );
        }
        return true;
      },
    });
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('keras-file', `${shown} is not a readable zip archive (${e instanceof Error ? e.message : String(e)}); a .keras file is a zip of config.json, metadata.json and model.weights.h5. ${convertHint(abs)}`);
  }
  const configBytes = files['config.json'];
  if (!configBytes) {
    throw new EngineError('not-a-model', `${shown} is a zip without config.json at its root, so it is not a Keras model archive (a .keras file holds config.json, metadata.json and model.weights.h5).`);
  }
  const weightBytes = files['model.weights.h5'];
  if (!weightBytes) {
    throw new EngineError(
      'not-a-model',
      hasNpz
        ? `${shown} stores its weights as model.weights.npz, which Layer Lens does not read; save the model with the default weights format (HDF5).`
        : `${shown} has no model.weights.h5, so its weights are missing; save the model again with model.save("${path.basename(abs)}").`,
    );
  }
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const config = parseJsonBounded(decoder.decode(configBytes), `config.json in ${shown}`);
  let kerasVersion: string | undefined;
  if (files['metadata.json']) {
    try {
      const meta = parseJsonBounded(decoder.decode(files['metadata.json']), `metadata.json in ${shown}`);
      if (isObject(meta) && typeof meta['keras_version'] === 'string') kerasVersion = meta['keras_version'];
    } catch {
      // metadata.json only says which Keras wrote the file.
    }
  }
  const weights = await openHdf5(weightBytes, abs, shown, 'model.weights.h5');
  return { kind: 'keras', config, kerasVersion, weights };
}
