/**
 * Reads an ONNX model file (`.onnx`) and its external data, with the same
 * refusals as the other loaders, before ONNX Runtime sees a byte:
 *
 * - the file is a protobuf ModelProto (protobufjs, schema in
 *   src/engine/onnx/schema.ts); damaged bytes end in one line naming the file;
 * - sizes are checked before anything is allocated: the file itself (2 GB,
 *   protobuf's own limit), every initializer's element count against its
 *   dims and data, and the total weight bytes;
 * - external data (`data_location: EXTERNAL`, a `location` path relative to
 *   the model) must stay inside the model's folder: `../`, absolute paths,
 *   URLs and symlinks that resolve outside are refused (resolveInside), and
 *   `offset`/`length` must lie inside the file. External data is read here
 *   and put into the tensors, so the bytes ONNX Runtime gets are one
 *   self-contained model and Runtime never opens a path of its own;
 * - operators from domains ONNX Runtime does not implement (custom ops) are
 *   named, node and domain, before a session is created.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { dataTypeName, decodeModel, elementBytes, int, type OnnxGraph, type OnnxModelProto, type OnnxTensor } from '../onnx/proto';
import { clipText as clip, lfsMessage, lfsPointerSize, limits, rel, type ModelFiles } from './files';
import { resolveInside } from './modelFiles';
import { checkRegularFile, readRegularFile, UnreadableFile } from './safeRead';

/** protobuf cannot encode a message over 2 GB; larger ONNX models keep their weights in external files. */
export const MAX_ONNX_BYTES = 2 * 1024 ** 3 - 1;

/** Operator domains ONNX Runtime's CPU build implements ('' is the default ai.onnx). */
const RUNTIME_DOMAINS = new Set(['', 'ai.onnx', 'ai.onnx.ml', 'com.microsoft', 'com.microsoft.nchwc', 'com.microsoft.experimental', 'ai.onnx.preview.training']);

export interface OnnxFiles {
  files: ModelFiles;
  /** The decoded model, external data inlined into its tensors. */
  model: OnnxModelProto;
  /** The file's bytes (for hashing and for a session when nothing had to be inlined). */
  bytes: Uint8Array;
  /** True when tensors were read from external files (the model must be re-encoded for ONNX Runtime). */
  inlined: boolean;
  weightBytes: number;
}

function tensorElements(t: OnnxTensor, where: string): number {
  let n = 1;
  for (const d of t.dims ?? []) {
    let v: number;
    try {
      v = int(d);
    } catch {
      v = -1;
    }
    if (!Number.isInteger(v) || v < 0) throw new EngineError('bad-weights', `${where}: tensor "${clip(t.name ?? '')}" has an invalid dimension; the file is damaged. Re-export the model.`);
    n *= v;
  }
  if (!(n <= limits.maxTensorElements)) {
    throw new EngineError('too-large', `${where}: tensor "${clip(t.name ?? '')}" claims ${n} values, more than the ${limits.maxTensorElements} a tensor may hold (refused before allocating).`);
  }
  return n;
}

/** Bytes of a tensor's values as stored in the file (typed fields count 4 or 8 bytes per value). */
function storedBytes(t: OnnxTensor): number {
  if (t.rawData && t.rawData.length > 0) return t.rawData.length;
  return (t.floatData?.length ?? 0) * 4 + (t.int32Data?.length ?? 0) * 4 + (t.int64Data?.length ?? 0) * 8 + (t.doubleData?.length ?? 0) * 8 + (t.uint64Data?.length ?? 0) * 8;
}

function storedCount(t: OnnxTensor): number {
  return (t.floatData?.length ?? 0) + (t.int32Data?.length ?? 0) + (t.int64Data?.length ?? 0) + (t.doubleData?.length ?? 0) + (t.uint64Data?.length ?? 0) + (t.stringData?.length ?? 0);
}

interface External {
  tensor: OnnxTensor;
  location: string;
  offset: number;
  length: number | undefined;
  expected: number;
}

/** Every tensor of a graph and its subgraphs (initializers, Constant values, attribute tensors). */
function* graphTensors(g: OnnxGraph | undefined, depth = 0): Generator<OnnxTensor> {
  if (!g || depth > 64) return;
  for (const t of g.initializer ?? []) yield t;
  for (const s of g.sparseInitializer ?? []) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.g) yield* graphTensors(a.g, depth + 1);
      for (const sg of a.graphs ?? []) yield* graphTensors(sg, depth + 1);
    }
  }
}

function checkTensor(t: OnnxTensor, where: string): { bytes: number; external?: External } {
  const n = tensorElements(t, where);
  const per = elementBytes(t.dataType ?? 0);
  const name = clip(t.name ?? '');
  if (per === undefined) throw new EngineError('bad-weights', `${where}: tensor "${name}" has data type ${t.dataType}, which ONNX does not define; the file is damaged.`);
  const expected = Math.ceil(n * per);
  if (t.dataLocation === 1) {
    const entry = (k: string) => t.externalData?.find((e) => e.key === k)?.value;
    const location = entry('location');
    if (!location) throw new EngineError('bad-weights', `${where}: tensor "${name}" says its data is in an external file but names none (no "location"); the file is damaged.`);
    const num = (k: string): number | undefined => {
      const v = entry(k);
      if (v === undefined || v === '') return undefined;
      const x = Number(v);
      if (!Number.isSafeInteger(x) || x < 0) throw new EngineError('bad-weights', `${where}: tensor "${name}" has external-data ${k} "${clip(v, 30)}", which is not a byte count; the file is damaged.`);
      return x;
    };
    const offset = num('offset') ?? 0;
    const length = num('length');
    if (length !== undefined && length !== expected && per > 0) {
      throw new EngineError('shard-size', `${where}: tensor "${name}" (${dataTypeName(t.dataType)}, ${n} values) needs ${expected} bytes but its external data is ${length} bytes long; re-export the model.`);
    }
    return { bytes: expected, external: { tensor: t, location, offset, length, expected } };
  }
  if (t.dataType === 8) return { bytes: storedBytes(t) };
  const raw = t.rawData && t.rawData.length > 0;
  if (raw && t.rawData!.length !== expected) {
    throw new EngineError('shard-size', `${where}: tensor "${name}" (${dataTypeName(t.dataType)}, ${n} values) should hold ${expected} bytes but holds ${t.rawData!.length} (${t.rawData!.length < expected ? 'truncated' : 'extra data'}); the file is damaged. Re-export the model.`);
  }
  if (!raw && storedCount(t) !== n && !(storedCount(t) === 0 && n === 0)) {
    // Typed fields: FLOAT16/BFLOAT16 and 8-bit types pack into int32_data one value each.
    throw new EngineError('shard-size', `${where}: tensor "${name}" should hold ${n} values but holds ${storedCount(t)}; the file is damaged. Re-export the model.`);
  }
  return { bytes: raw ? expected : storedBytes(t) };
}

/** The custom-op check: nodes in domains ONNX Runtime lacks that no local function defines. */
function checkDomains(model: OnnxModelProto, shown: string): void {
  const local = new Set((model.functions ?? []).map((f) => `${f.domain ?? ''}::${f.name ?? ''}`));
  const bad: string[] = [];
  const visit = (g: OnnxGraph | undefined, depth: number) => {
    if (!g || depth > 64) return;
    for (const n of g.node ?? []) {
      const domain = n.domain ?? '';
      if (!RUNTIME_DOMAINS.has(domain) && !local.has(`${domain}::${n.opType ?? ''}`)) bad.push(`${clip(domain, 40)}::${clip(n.opType ?? '?', 40)} (node "${clip(n.name || '(unnamed)', 60)}")`);
      for (const a of n.attribute ?? []) {
        visit(a.g, depth + 1);
        for (const sg of a.graphs ?? []) visit(sg, depth + 1);
      }
    }
  };
  visit(model.graph, 0);
  for (const f of model.functions ?? []) visit({ node: f.node }, 1);
  if (bad.length > 0) {
    const shown3 = [...new Set(bad)].slice(0, 3).join(', ');
    const more = bad.length > 3 ? ` and ${bad.length - 3} more` : '';
    throw new EngineError(
      'unknown-layer',
      `${shown} uses custom operator${bad.length > 1 ? 's' : ''} ${shown3}${more}, which ONNX Runtime does not provide; export the model with standard ONNX operators only (torch.onnx.export without custom symbolic ops).`,
    );
  }
}

/** Reads, checks and decodes an ONNX file; external data is read (confined to the folder) and inlined. */
export async function readOnnxFile(modelPath: string): Promise<OnnxFiles> {
  const abs = path.resolve(modelPath);
  const shown = rel(abs);
  // An ordinary file on a disk, read with a bound and a time limit (a FIFO or /proc file named .onnx never hangs a load).
  const { stats: st } = await checkRegularFile(abs, shown);
  if (st.size === 0) throw new EngineError('not-a-model', `${shown} is empty (0 bytes); the export may have been interrupted.`);
  const tooLarge = (size: number) =>
    new EngineError('too-large', `${shown} is ${(size / 1024 ** 3).toFixed(1)} GB; an ONNX file cannot be over 2 GB (protobuf's limit), so it is damaged. Large models keep their weights in external data files.`);
  if (st.size > MAX_ONNX_BYTES) throw tooLarge(st.size);
  const folder = await fs.promises.realpath(path.dirname(await fs.promises.realpath(abs)));
  const bytes = await readRegularFile(abs, { shown, maxBytes: MAX_ONNX_BYTES, tooLarge });
  // A clone without `git lfs pull` (.onnx is among the first patterns people track with LFS): say so, not "damaged protobuf".
  const lfs = lfsPointerSize(bytes);
  if (lfs !== undefined) throw new EngineError('not-a-model', lfsMessage(shown, lfs));
  let model: OnnxModelProto;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new EngineError('not-a-model', `${shown} is not a readable ONNX model: its protobuf is damaged (${clip(why, 120)}). Re-export the model or copy the file again.`);
  }
  const g = model.graph;
  if (!g || (g.node ?? []).length === 0) {
    throw new EngineError('not-a-model', `${shown} holds no ONNX graph (no nodes); it is not an ONNX model, or it is damaged.`);
  }
  if (!model.opsetImport || model.opsetImport.length === 0) {
    throw new EngineError('not-a-model', `${shown} declares no operator set (opset_import); it is not a valid ONNX model. Re-export it.`);
  }
  checkDomains(model, shown);

  let total = 0;
  const externals: External[] = [];
  for (const t of graphTensors(g)) {
    const c = checkTensor(t, shown);
    total += c.bytes;
    if (c.external) externals.push(c.external);
    if (total > limits.maxWeightBytes) {
      throw new EngineError('too-large', `${shown} holds more than ${(limits.maxWeightBytes / 1024 ** 3).toFixed(0)} GB of weights, more than Layer Lens agrees to load (refused before allocating).`);
    }
  }
  if (externals.length > 0 && total > MAX_ONNX_BYTES) {
    throw new EngineError('too-large', `${shown} keeps ${(total / 1024 ** 3).toFixed(1)} GB of weights in external files; Layer Lens loads ONNX models up to 2 GB in all.`);
  }
  const sizes = new Map<string, number>();
  for (const x of externals) {
    const file = await resolveInside(
      folder,
      x.location,
      shown,
      (why) => `external data path "${clip(x.location)}" of tensor "${clip(x.tensor.name ?? '')}" in ${shown} ${why}; external data files must sit in the model's folder. Move the file next to the .onnx and name it by file name.`,
    );
    let size = sizes.get(file);
    if (size === undefined) {
      try {
        size = (await checkRegularFile(file, clip(x.location))).stats.size;
      } catch (e) {
        // Missing here; anything else that is no ordinary file (a FIFO, a kernel file) is refused in its own words.
        if (!(e instanceof UnreadableFile) || e.kind !== 'missing') throw e;
        size = -1;
      }
      sizes.set(file, size);
    }
    if (size < 0) throw new EngineError('missing-shard', `external data file ${clip(x.location)} is missing next to ${shown} (tensor "${clip(x.tensor.name ?? '')}" is stored there); copy it next to the model.`);
    const length = x.length ?? x.expected;
    if (x.offset + length > size && size <= 1024) {
      // Too short: a Git LFS pointer left where the data should be gets its own words, not "truncated".
      const shownData = `external data file ${clip(x.location)}`;
      const pointer = lfsPointerSize(await readRegularFile(file, { shown: shownData, maxBytes: 1024 }));
      if (pointer !== undefined) throw new EngineError('shard-size', `${shown}: ${lfsMessage(shownData, pointer)}`);
    }
    if (x.offset + length > size) {
      throw new EngineError('shard-size', `${shown}: tensor "${clip(x.tensor.name ?? '')}" is stored at bytes ${x.offset}-${x.offset + length} of ${clip(x.location)}, which has only ${size} bytes (truncated); copy the file again or re-export the model.`);
    }
    const handle = await fs.promises.open(file, 'r');
    try {
      const data = new Uint8Array(length);
      const { bytesRead } = await handle.read(data, 0, length, x.offset);
      if (bytesRead !== length) throw new EngineError('shard-size', `${shown}: could read only ${bytesRead} of ${length} bytes of tensor "${clip(x.tensor.name ?? '')}" from ${clip(x.location)}.`);
      x.tensor.rawData = data;
    } finally {
      await handle.close();
    }
    x.tensor.dataLocation = 0;
    x.tensor.externalData = [];
  }
  const files: ModelFiles = { modelJsonPath: abs, folder, format: 'onnx', artifacts: {}, layerClasses: [], warnings: [] };
  return { files, model, bytes, inlined: externals.length > 0, weightBytes: total };
}
