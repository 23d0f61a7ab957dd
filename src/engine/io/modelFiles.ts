/**
 * Reads a TF.js model (model.json + weight shards) from disk into
 * `tf.io.ModelArtifacts`, refusing anything that could hurt the user:
 * paths that leave the model's folder (`..`, absolute, symlinks), files far
 * larger than a model needs, JSON nested deep enough to blow the stack,
 * weight specs that would allocate absurd amounts of memory. Every refusal is
 * an EngineError whose message names the file, the cause and the fix.
 *
 * All file access goes through `fs.promises` looked up at call time, so a test
 * can record every path this module opens. Keras `.h5`/`.keras` files are
 * read by keras.ts into the same ModelFiles.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { clipText, lfsMessage, lfsPointerSize, limits, parseJsonBounded, rel, type ModelFiles, type ModelFormat } from './files';

const weightDtypes = new Set(['float32', 'int32', 'bool']);
const quantDtypes: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };

const clip = clipText;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Bytes one manifest entry occupies in its group's concatenated shards. */
function entryBytes(entry: tfTypes.io.WeightsManifestEntry, elements: number): number {
  const q = entry.quantization;
  if (q) return elements * (quantDtypes[q.dtype] ?? 4);
  return elements * (entry.dtype === 'bool' ? 1 : 4);
}

/**
 * Resolves a manifest path inside the model folder, refusing escapes before any
 * file is opened: absolute paths, URLs, `..` segments, then (after realpath)
 * symlinks that point elsewhere.
 */
export async function resolveInside(folder: string, manifestPath: string, modelJsonName: string, describe?: (why: string) => string): Promise<string> {
  const refuse = (why: string) =>
    new EngineError(
      'unsafe-path',
      describe?.(why) ??
        `weights path "${clip(manifestPath)}" in ${modelJsonName} ${why}; weight files must sit in the model's folder. Move the shard next to model.json and list it by file name.`,
    );
  if (manifestPath.length === 0 || manifestPath.includes('\0')) throw refuse('is empty or malformed');
  if (/^[a-z][a-z0-9+.-]*:/i.test(manifestPath) && !/^[a-z]:[\\/]/i.test(manifestPath)) throw refuse('is a URL');
  if (path.isAbsolute(manifestPath) || /^[a-z]:[\\/]/i.test(manifestPath) || manifestPath.startsWith('\\')) {
    throw refuse('is absolute');
  }
  const segments = manifestPath.split(/[\\/]+/);
  if (segments.includes('..')) throw refuse('leaves the model folder (..)');
  const joined = path.join(folder, ...segments);
  let real: string;
  try {
    real = await fs.promises.realpath(joined);
  } catch {
    return joined; // does not exist: the caller reports the missing shard by name
  }
  const inside = path.relative(folder, real);
  if (inside.startsWith('..') || path.isAbsolute(inside)) throw refuse(`is a symlink to ${real}, outside the model folder`);
  return real;
}

function collectLayerClasses(topology: unknown, out: Set<string>, depth = 0): void {
  if (depth > 200) return;
  if (Array.isArray(topology)) {
    for (const t of topology) collectLayerClasses(t, out, depth + 1);
    return;
  }
  if (!isObject(topology)) return;
  const cls = topology['class_name'];
  const config = topology['config'];
  if (typeof cls === 'string' && isObject(config)) {
    out.add(cls);
    const layers = config['layers'];
    if (Array.isArray(layers)) collectLayerClasses(layers, out, depth + 1);
    // Wrappers (TimeDistributed, Bidirectional) hold their layer in config.layer.
    if (isObject(config['layer'])) collectLayerClasses(config['layer'], out, depth + 1);
    return;
  }
  if (isObject(topology['model_config'])) collectLayerClasses(topology['model_config'], out, depth + 1);
}

function validateEntry(e: unknown, where: string): tfTypes.io.WeightsManifestEntry {
  if (!isObject(e) || typeof e['name'] !== 'string' || !Array.isArray(e['shape']) || typeof e['dtype'] !== 'string') {
    throw new EngineError('not-a-model', `${where}: a weight entry is not of the form {name, shape, dtype}.`);
  }
  const name = clip(e['name']);
  // tfjs keeps decoded weights in a plain object keyed by name: "__proto__" would replace its prototype.
  if (e['name'] === '__proto__') throw new EngineError('bad-weights', `${where}: a weight is named "__proto__", which is not a weight name; the manifest is damaged.`);
  const shape = e['shape'] as unknown[];
  if (!shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new EngineError('bad-weights', `${where}: weight "${name}" has an invalid shape [${clip(shape.map((d) => JSON.stringify(d) ?? String(d)).join(', '))}].`);
  }
  const dtype = e['dtype'];
  if (!weightDtypes.has(dtype)) {
    throw new EngineError('bad-weights', `${where}: weight "${name}" has dtype "${clip(dtype, 40)}", which Layer Lens cannot load (float32, int32 or bool).`);
  }
  const q = e['quantization'];
  if (q !== undefined) {
    // hasOwnProperty, not `in`: "toString" is no quantization dtype.
    if (!isObject(q) || typeof q['dtype'] !== 'string' || !Object.prototype.hasOwnProperty.call(quantDtypes, q['dtype'])) {
      throw new EngineError('bad-weights', `${where}: weight "${name}" has an unknown quantization (expected uint8, uint16 or float16).`);
    }
  }
  return e as unknown as tfTypes.io.WeightsManifestEntry;
}

async function fileSize(p: string): Promise<number | undefined> {
  try {
    const st = await fs.promises.stat(p);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

/** Reads and checks model.json and its shards. Does not build the model. */
export async function readModelFiles(modelJsonPath: string): Promise<ModelFiles> {
  const abs = path.resolve(modelJsonPath);
  const shown = rel(abs);
  const ext = path.extname(abs).toLowerCase();
  if (ext === '.h5' || ext === '.hdf5' || ext === '.keras') {
    // Loaded on demand: the Keras reader brings h5wasm (4 MB) along.
    const { readKerasFiles } = await import('./keras');
    return readKerasFiles(abs);
  }
  let realJson: string;
  let st: fs.Stats;
  try {
    realJson = await fs.promises.realpath(abs);
    st = await fs.promises.stat(realJson);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new EngineError('unsafe-path', `${shown} is inside a symlink loop; fix the links that point back into the folder.`);
    throw new EngineError('not-found', `${shown} does not exist.`);
  }
  if (!st.isFile()) throw new EngineError('not-a-model', `${shown} is not a file.`);
  if (st.size === 0) throw new EngineError('not-json', `${shown} is empty (0 bytes); the export may have been interrupted.`);
  if (st.size > limits.maxModelJsonBytes) {
    throw new EngineError(
      'too-large',
      `${shown} is ${(st.size / 1048576).toFixed(0)} MB; a TF.js model.json holds only the topology and weights manifest (a few MB at most), so this is not one Layer Lens will read.`,
    );
  }
  const folder = path.dirname(realJson);
  const text = await fs.promises.readFile(realJson, 'utf8');
  const lfs = lfsPointerSize(Buffer.from(text.slice(0, 1100), 'latin1'));
  if (lfs !== undefined) throw new EngineError('not-json', lfsMessage(shown, lfs));
  const json = parseJsonBounded(text, shown);
  if (!isObject(json) || !isObject(json['modelTopology'])) {
    throw new EngineError(
      'not-a-model',
      `${shown} is JSON but not a TF.js model: it has no "modelTopology" object. Layer Lens opens model.json files written by tfjs (model.save) or tensorflowjs_converter.`,
    );
  }
  const topology = json['modelTopology'] as Record<string, unknown>;
  const isGraph = json['format'] === 'graph-model' || Array.isArray(topology['node']);
  const format: ModelFormat = isGraph ? 'graph' : 'layers';
  const layerClasses = new Set<string>();
  if (format === 'layers') {
    if (typeof topology['class_name'] !== 'string' && !isObject(topology['model_config'])) {
      throw new EngineError('not-a-model', `${shown}: "modelTopology" has neither "class_name" nor "model_config"; it is not a layers model.`);
    }
    collectLayerClasses(topology, layerClasses);
  }

  const manifest = json['weightsManifest'] ?? [];
  if (!Array.isArray(manifest)) throw new EngineError('not-a-model', `${shown}: "weightsManifest" must be a list of weight groups.`);
  const name = path.basename(abs);
  const weightSpecs: tfTypes.io.WeightsManifestEntry[] = [];
  const buffers: Uint8Array[] = [];
  let totalBytes = 0;
  const shardsSeen = new Set<string>();
  const weightNames = new Set<string>();
  for (let g = 0; g < manifest.length; g++) {
    const group: unknown = manifest[g];
    if (!isObject(group) || !Array.isArray(group['paths']) || !Array.isArray(group['weights'])) {
      throw new EngineError('not-a-model', `${shown}: weight group ${g + 1} needs "paths" and "weights" lists.`);
    }
    const paths = group['paths'] as unknown[];
    const entries = (group['weights'] as unknown[]).map((e) => validateEntry(e, shown));
    // tfjs keeps decoded weights by name: a second entry of the same name would replace the first, which then leaks.
    for (const e of entries) {
      if (weightNames.has(e.name)) throw new EngineError('not-a-model', `${shown}: the weights manifest lists weight "${clip(e.name)}" twice; the manifest is damaged. Re-export the model.`);
      weightNames.add(e.name);
    }
    let expected = 0;
    for (const e of entries) {
      let elements = 1;
      for (const d of e.shape) {
        elements *= d;
        if (elements > limits.maxTensorElements) {
          throw new EngineError(
            'bad-weights',
            `${shown}: weight "${clip(e.name)}" claims shape [${clip(e.shape.join(', '))}], more than ${limits.maxTensorElements} values; refused before allocating.`,
          );
        }
      }
      expected += entryBytes(e, elements);
    }
    if (expected > limits.maxWeightBytes || totalBytes + expected > limits.maxWeightBytes) {
      throw new EngineError('bad-weights', `${shown}: the manifest describes ${(expected / 2 ** 30).toFixed(1)} GB of weights; refused before allocating.`);
    }
    // Resolve and size every shard before reading any of them.
    const files: { shard: string; file: string; size: number }[] = [];
    let actual = 0;
    for (const p of paths) {
      if (typeof p !== 'string') throw new EngineError('not-a-model', `${shown}: a weights path is not a string.`);
      const file = await resolveInside(folder, p, name);
      // Listing one shard many times would make a small file read as gigabytes.
      if (shardsSeen.has(file)) throw new EngineError('not-a-model', `${shown} lists weights shard ${clip(p)} more than once; the manifest is damaged. Re-export the model.`);
      shardsSeen.add(file);
      const size = await fileSize(file);
      if (size === undefined) {
        throw new EngineError(
          'missing-shard',
          `weights shard ${clip(p)} is missing next to ${shown} (the manifest lists ${paths.length} shard${paths.length === 1 ? '' : 's'} in group ${g + 1}).`,
        );
      }
      files.push({ shard: p, file, size });
      actual += size;
    }
    if (actual !== expected) {
      await refuseLfsPointers(files, expected);
      const which = files.length === 1 ? `weights shard ${clip(files[0].shard)} is` : `the ${files.length} shards of group ${g + 1} are`;
      throw new EngineError(
        'shard-size',
        `${which} ${actual} bytes but ${shown} describes ${expected} bytes of weights (${actual < expected ? 'truncated' : 'extra data'}); re-export the model or restore the shard.`,
      );
    }
    for (const f of files) buffers.push(new Uint8Array(await fs.promises.readFile(f.file)));
    totalBytes += expected;
    weightSpecs.push(...entries);
  }
  const weightData = new Uint8Array(totalBytes);
  let offset = 0;
  for (const b of buffers) {
    weightData.set(b, offset);
    offset += b.byteLength;
  }
  const warnings = scanNonFinite(weightSpecs, weightData.buffer);

  const artifacts: tfTypes.io.ModelArtifacts = {
    modelTopology: topology as tfTypes.io.ModelArtifacts['modelTopology'],
    weightSpecs,
    weightData: weightData.buffer,
    format: typeof json['format'] === 'string' ? json['format'] : undefined,
    generatedBy: typeof json['generatedBy'] === 'string' ? json['generatedBy'] : undefined,
    convertedBy: typeof json['convertedBy'] === 'string' ? json['convertedBy'] : null,
    trainingConfig: isObject(json['trainingConfig']) ? (json['trainingConfig'] as unknown as tfTypes.io.TrainingConfig) : undefined,
    signature: isObject(json['signature']) ? json['signature'] : undefined,
    userDefinedMetadata: isObject(json['userDefinedMetadata']) ? (json['userDefinedMetadata'] as Record<string, object>) : undefined,
    modelInitializer: isObject(json['modelInitializer']) ? json['modelInitializer'] : undefined,
  };
  return { modelJsonPath: abs, folder, format, artifacts, layerClasses: [...layerClasses], warnings };
}

/** A shard that is a Git LFS pointer gets its own message instead of "truncated" (checked only when the sizes disagree). */
async function refuseLfsPointers(files: { shard: string; file: string; size: number }[], expected: number): Promise<void> {
  for (const f of files) {
    if (f.size > 1024) continue;
    const size = lfsPointerSize(new Uint8Array(await fs.promises.readFile(f.file)));
    if (size !== undefined) {
      const others = files.length > 1 ? ` (${files.length} shards, ${expected} bytes in all)` : '';
      throw new EngineError('shard-size', `${lfsMessage(`weights shard ${clip(f.shard)}`, size)}${others}`);
    }
  }
}

/** Names of float32 weights holding NaN or Inf, so a load can warn and say where. */
function scanNonFinite(specs: tfTypes.io.WeightsManifestEntry[], data: ArrayBuffer): string[] {
  const warnings: string[] = [];
  let offset = 0;
  for (const s of specs) {
    const elements = s.shape.reduce((a, b) => a * b, 1);
    const bytes = entryBytes(s, elements);
    if (s.dtype === 'float32' && !s.quantization) {
      // Entries after uint8-quantised ones may sit at unaligned offsets.
      const v = offset % 4 === 0 ? new Float32Array(data, offset, elements) : new Float32Array(data.slice(offset, offset + bytes));
      let nan = 0;
      let inf = 0;
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (x !== x) nan++;
        else if (x === Infinity || x === -Infinity) inf++;
      }
      if (nan || inf) warnings.push(`weight "${s.name}" holds ${nan} NaN and ${inf} infinite values of ${elements}`);
    }
    offset += bytes;
  }
  return warnings;
}
