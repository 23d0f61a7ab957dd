/**
 * What every model reader (model.json, Keras, HDF5) shares: the ModelFiles
 * they produce, the limits on what a file may make the engine read, JSON
 * parsed only after a scan says it is safe to, and paths and text from files
 * as messages show them.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import * as path from 'node:path';
import { EngineError } from '../errors';

export const limits = {
  /** A model.json holds only the topology and manifest; real ones are < 5 MB. */
  maxModelJsonBytes: 64 * 1024 * 1024,
  /** Nesting depth of model.json; Keras configs of nested models reach ~40. */
  maxJsonDepth: 500,
  /**
   * Objects and arrays in model.json (or a Keras config). Real files hold
   * about one per 40 bytes (a 92 KB Teachable Machine model.json: 2,305), so
   * even a 64 MB one stays under 2 million. More is a heap bomb: `{},`
   * repeated makes JSON.parse build ~20x the file's size in objects, and a
   * worker that runs out of heap inside JSON.parse can end the whole process
   * under Node 20 instead of only the worker.
   */
  maxJsonContainers: 4_000_000,
  /** Total weight bytes we agree to read. */
  maxWeightBytes: 4 * 1024 * 1024 * 1024 - 1,
  /** Elements in a single weight tensor. */
  maxTensorElements: 2 ** 31 - 1,
};

export type ModelFormat = 'layers' | 'graph' | 'onnx';

export interface ModelFiles {
  /** Absolute path of model.json as the user named it. */
  modelJsonPath: string;
  /** Real (symlink-resolved) folder of the model: nothing outside is read. */
  folder: string;
  format: ModelFormat;
  artifacts: tfTypes.io.ModelArtifacts;
  /** Every layer class named in a layers topology (nested ones included). */
  layerClasses: string[];
  warnings: string[];
}

let displayRoot_ = process.cwd();

/** Paths in messages are shown relative to this folder (the workspace, or the CLI's cwd). */
export function setDisplayRoot(dir: string): void {
  displayRoot_ = dir;
}

/** The folder messages show paths relative to (the workspace, or the CLI's cwd). */
export function displayRoot(): string {
  return displayRoot_;
}

export function rel(p: string): string {
  const r = path.relative(displayRoot_, p);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
}

/** Text from the file (a name, a path, a shape) as a message shows it: one line, control characters escaped, short. */
export function clipText(text: string, max = 100): string {
  const escaped = text.slice(0, max * 6).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}

/**
 * Max nesting of arrays/objects and how many there are, by a scan of the text
 * that stops as soon as either passes its limit, so JSON.parse never recurses
 * too deep or builds more objects than a model has.
 */
export function jsonShape(text: string, maxDepth = Infinity, maxContainers = Infinity): { depth: number; containers: number } {
  let depth = 0;
  let max = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++containers > maxContainers) break;
      if (++depth > max) {
        max = depth;
        if (max > maxDepth) break;
      }
    } else if (c === 125 || c === 93) depth--;
  }
  return { depth: max, containers };
}

/**
 * JSON.parse of a user's file after jsonShape says it is safe to: refuses
 * (EngineError 'too-deep' / 'too-large' / 'not-json') with `what` named.
 */
export function parseJsonBounded(text: string, what: string): unknown {
  const shape = jsonShape(text, limits.maxJsonDepth, limits.maxJsonContainers);
  if (shape.depth > limits.maxJsonDepth) {
    throw new EngineError('too-deep', `${what} nests deeper than ${limits.maxJsonDepth} levels; no real model does, so it was not parsed.`);
  }
  if (shape.containers > limits.maxJsonContainers) {
    throw new EngineError(
      'too-large',
      `${what} holds more than ${limits.maxJsonContainers.toLocaleString('en-US')} JSON objects and arrays; a real model's has a few thousand, so it was not parsed.`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8 quotes the text around the error, line breaks included: keep the message on one line.
    const why = clipText(e instanceof Error ? e.message : String(e), 200);
    throw new EngineError('not-json', `${what} is not valid JSON (${why}); the file may be truncated or hand-edited.`);
  }
}

const LFS_HEADER = 'version https://git-lfs.github.com/spec/v1';

/**
 * The size a Git LFS pointer stands for, when `bytes` are one: a clone
 * without `git lfs pull` leaves a ~130-byte text file ("version
 * https://git-lfs.github.com/spec/v1", "oid sha256:…", "size N") where the
 * weights should be.
 */
export function lfsPointerSize(bytes: Uint8Array): number | undefined {
  if (bytes.length > 1024 || bytes.length < LFS_HEADER.length) return undefined;
  const text = Buffer.from(bytes).toString('latin1');
  if (!text.startsWith(LFS_HEADER)) return undefined;
  const size = /^size (\d+)$/m.exec(text);
  return size ? Number(size[1]) : 0;
}

/** The message for a file that is a Git LFS pointer, not the file it stands for. */
export function lfsMessage(shown: string, size: number | undefined): string {
  const real = size ? ` (the real file is ${size.toLocaleString('en-US')} bytes)` : '';
  return `${shown} is a Git LFS pointer, not the file itself${real}: the repository was cloned without fetching its LFS files. Run \`git lfs pull\` in the repository (install Git LFS first if needed), then open the model again.`;
}

/** NaN and infinite values among `values` (the load warns about weights holding them). */
export function countNonFinite(values: ArrayLike<number>): { nan: number; inf: number } {
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x !== x) nan++;
    else if (x === Infinity || x === -Infinity) inf++;
  }
  return { nan, inf };
}
