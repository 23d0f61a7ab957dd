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
import { clipText, countNonFinite, lfsMessage, lfsPointerSize, limits, parseJsonBounded, rel, type ModelFiles, type ModelFormat } from './files';
import { protectModelFiles } from './output';
import { checkRegularFile, readRegularFile, UnreadableFile } from './safeRead';

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
    // tfjs computes value * scale + min with whatever it finds: a string or a missing field makes every value NaN.
    if (q['dtype'] !== 'float16') {
      for (const field of ['scale', 'min'] as const) {
        if (typeof q[field] !== 'number') {
          throw new EngineError('bad-weights', `${where}: weight "${name}" is ${q['dtype']}-quantized, but its ${field} is ${clip(JSON.stringify(q[field]) ?? 'missing', 40)}, not a number; the manifest is damaged. Re-export the model.`);
        }
      }
    }
  }
  return e as unknown as tfTypes.io.WeightsManifestEntry;
}

/** A shard's size, or a refusal that says whether it is missing or is no ordinary file (a folder, FIFO or device is not "missing"). */
async function shardSize(file: string, p: string, shown: string, count: number, g: number): Promise<number> {
  try {
    return (await checkRegularFile(file, `weights shard ${clip(p)}`)).stats.size;
  } catch (e) {
    if (e instanceof UnreadableFile && e.kind !== 'missing') throw new EngineError('missing-shard', `${e.message.replace(/\.$/, '')} (next to ${shown}); restore the shard or re-export the model.`);
    throw new EngineError('missing-shard', `weights shard ${clip(p)} is missing next to ${shown} (the manifest lists ${count} shard${count === 1 ? '' : 's'} in group ${g + 1}).`);
  }
}

/** Every layer name in a layers topology (nested models' too), with how often it occurs. */
function layerNames(topology: unknown, out = new Map<string, number>(), depth = 0): Map<string, number> {
  if (depth > 200) return out;
  if (Array.isArray(topology)) for (const t of topology) layerNames(t, out, depth + 1);
  else if (isObject(topology)) {
    const config = topology['config'];
    if (typeof topology['class_name'] === 'string' && isObject(config) && typeof config['name'] === 'string') out.set(config['name'], (out.get(config['name']) ?? 0) + 1);
    for (const v of Object.values(topology)) if (typeof v === 'object' && v !== null) layerNames(v, out, depth + 1);
  }
  return out;
}

/**
 * tfjs gives a manifest weight to the variable of the same name, which is
 * the layer's name, a "/" and the weight's ("conv1/kernel"; nested scopes and
 * Keras cells add segments). An entry none of whose segments names a layer
 * has no variable to go to, and tfjs would refuse it only after every shard
 * was read: a 2 GB sparse shard of such a weight cost 56 s and 7.9 GB. So it
 * is refused from the manifest, before reading.
 */
function refuseUnusedWeights(specs: tfTypes.io.WeightsManifestEntry[], topology: unknown, shown: string): void {
  const names = layerNames(topology);
  // Two layers of one name: the build names that, more usefully than "unused weights" would.
  if ([...names.values()].some((n) => n > 1)) return;
  const unused = specs.filter((s) => !s.name.split('/').slice(0, -1).some((seg) => names.has(seg)));
  if (unused.length === 0) return;
  const bytes = unused.reduce((n, s) => n + entryBytes(s, s.shape.reduce((a, b) => a * b, 1)), 0);
  const list = unused.slice(0, 3).map((s) => `"${clip(s.name)}"`).join(', ') + (unused.length > 3 ? ` and ${unused.length - 3} more` : '');
  throw new EngineError(
    'bad-weights',
    `${shown}: the weights manifest lists ${unused.length === 1 ? 'weight' : 'weights'} ${list} (${formatBytes(bytes)}) that no layer of the model has; the manifest does not match the topology. Refused before reading the shards; re-export the model.`,
  );
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} bytes`;
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
  let text: string;
  try {
    text = Buffer.from(await readRegularFile(realJson, { shown, maxBytes: limits.maxModelJsonBytes })).toString('utf8');
  } catch (e) {
    if (e instanceof UnreadableFile) throw new EngineError('not-a-model', e.message);
    throw e;
  }
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
  let totalBytes = 0;
  const shardsSeen = new Set<string>();
  const weightNames = new Set<string>();
  // Every group is checked (entries, sizes, shards) before any shard is read.
  const reads: { shard: string; file: string; size: number; offset: number }[] = [];
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
      const size = await shardSize(file, p, shown, paths.length, g);
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
    for (const f of files) {
      reads.push({ ...f, offset: totalBytes });
      totalBytes += f.size;
    }
    weightSpecs.push(...entries);
  }
  if (format === 'layers') refuseUnusedWeights(weightSpecs, topology, shown);
  // No output of this process may ever replace these (io/output.ts).
  protectModelFiles([realJson, ...reads.map((r) => r.file)]);
  // Read straight into the one buffer tfjs gets (no second copy; shards over 2 GiB too), each as io/safeRead.ts reads.
  const weightData = new Uint8Array(totalBytes);
  for (const r of reads) {
    try {
      await readRegularFile(r.file, { shown: `weights shard ${clip(r.shard)}`, maxBytes: limits.maxWeightBytes, expectBytes: r.size, into: { buffer: weightData, offset: r.offset } });
    } catch (e) {
      if (e instanceof UnreadableFile) throw new EngineError('missing-shard', `${e.message.replace(/\.$/, '')} (next to ${shown}); restore the shard or re-export the model.`);
      throw e;
    }
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
    const size = lfsPointerSize(await readRegularFile(f.file, { shown: `weights shard ${clip(f.shard)}`, maxBytes: 1024 }));
    if (size !== undefined) {
      const others = files.length > 1 ? ` (${files.length} shards, ${expected} bytes in all)` : '';
      throw new EngineError('shard-size', `${lfsMessage(`weights shard ${clip(f.shard)}`, size)}${others}`);
    }
  }
}

/** NaN and infinite values among `elements` float32 values at `offset` (which may be unaligned after uint8 weights). */
function countFloat32(data: ArrayBuffer, offset: number, elements: number): { nan: number; inf: number } {
  return countNonFinite(offset % 4 === 0 ? new Float32Array(data, offset, elements) : new Float32Array(data.slice(offset, offset + elements * 4)));
}

/**
 * The same count for a quantized weight, over the values tfjs will make:
 * uint8/uint16 as Math.fround(q * scale + min) (a huge or infinite scale or
 * min gives infinities, as float32 weights would hold them), float16 by its
 * exponent bits.
 */
function countQuantized(data: ArrayBuffer, offset: number, elements: number, q: NonNullable<tfTypes.io.WeightsManifestEntry['quantization']>): { nan: number; inf: number } {
  let nan = 0;
  let inf = 0;
  const bytes = new Uint8Array(data, offset, elements * (quantDtypes[q.dtype] ?? 1));
  if (q.dtype === 'float16') {
    for (let i = 0; i < elements; i++) {
      const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
      if ((h & 0x7c00) === 0x7c00) (h & 0x03ff ? nan++ : inf++);
    }
    return { nan, inf };
  }
  const scale = q.scale ?? NaN;
  const min = q.min ?? NaN;
  const wide = q.dtype === 'uint16';
  for (let i = 0; i < elements; i++) {
    const v = Math.fround((wide ? bytes[2 * i] | (bytes[2 * i + 1] << 8) : bytes[i]) * scale + min);
    if (v !== v) nan++;
    else if (v === Infinity || v === -Infinity) inf++;
  }
  return { nan, inf };
}

/** Names of weights holding NaN or Inf (float32, or quantized ones once dequantized), so a load can warn and say where. */
function scanNonFinite(specs: tfTypes.io.WeightsManifestEntry[], data: ArrayBuffer): string[] {
  const warnings: string[] = [];
  let offset = 0;
  for (const s of specs) {
    const elements = s.shape.reduce((a, b) => a * b, 1);
    const bytes = entryBytes(s, elements);
    if (s.dtype === 'float32') {
      const { nan, inf } = s.quantization ? countQuantized(data, offset, elements, s.quantization) : countFloat32(data, offset, elements);
      if (nan || inf) warnings.push(`weight "${s.name}" holds ${nan} NaN and ${inf} infinite values of ${elements}`);
    }
    offset += bytes;
  }
  return warnings;
}
