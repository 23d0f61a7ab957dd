/**
 * The compute worker: a worker_threads entry that owns tfjs and every loaded
 * model, and serves the WorkerApi over the rpc helper. Nothing here blocks the
 * extension host; the host terminates this thread if it stops answering.
 */
import * as tf from '@tensorflow/tfjs';
import { parentPort } from 'node:worker_threads';
import { initBackend } from '../engine/backend';
import { EngineError, messageOf } from '../engine/errors';
import { explainTrap, wasmTrapped } from '../engine/wasmTrap';
import { setDisplayRoot } from '../engine/io/files';
import { setFallbackRoot } from '../engine/io/fallbackDir';
import { fsErrorLine } from '../engine/io/fsErrors';
import { Comparer } from '../engine/compare/comparer';
import { listImageSet } from '../engine/compare/imageSet';
import { LiveMapsProbe } from '../engine/compare/probe';
import { Inspector } from '../engine/inspect/inspector';
import { EngineSession } from '../engine/session';
import { imageThumbnail, readImageFile, resizeImage } from '../engine/image';
import { previewAugmentations } from '../engine/train/augment';
import { finetune } from '../engine/train/finetune';
import { finetuneOnnx, isOnnxPath } from '../engine/onnx/finetune';
import { pretrainRotation } from '../engine/train/pretext';
import { lowerThreadPriority } from '../engine/threadPriority';
import { embedHandlers } from './embedMethods';
import { isRpcMessage, RpcServer, type Handlers, type Port, type RpcError } from '../protocol/rpc';
import type { WorkerApi } from '../protocol/workerApi';
import type { TrainProgress } from '../protocol/train';

const port = parentPort;
if (!port) throw new Error('worker.js must run in a worker thread');
// Compute yields to the extension host and the UI (and the helper threads a
// data-parallel fine-tune starts from here inherit it).
lowerThreadPriority();

const session = new EngineSession();
const inspector = new Inspector();
const comparer = new Comparer();

const handlers: Handlers<WorkerApi> = {
  init: async ({ prefer, wasmDir, displayRoot, storageDir }) => {
    if (displayRoot) setDisplayRoot(displayRoot);
    if (storageDir) setFallbackRoot(storageDir);
    return initBackend({ prefer, wasmDir: wasmDir ?? __dirname });
  },
  loadModel: async ({ path }) => {
    inspector.release(path);
    comparer.release(path);
    return (await session.model(path, { reload: true })).summary;
  },
  unloadModel: ({ path }) => {
    inspector.release(path);
    comparer.release(path);
    session.unload(path);
  },
  inspect: async ({ modelPath, imagePath, normalization, output }, ctx) => {
    const loaded = await session.model(modelPath);
    const result = await inspector.inspect(loaded, imagePath, normalization, output !== undefined ? { output } : {});
    // The result stays in the inspector; send a copy of the input pixels.
    const rgb = result.input.rgb.slice();
    ctx.transfer([rgb.buffer]);
    return { ...result, input: { ...result.input, rgb } };
  },
  layerMaps: async ({ modelPath, layerPath, maxSize }, ctx) => {
    const maps = await inspector.layerMaps(modelPath, layerPath, maxSize);
    ctx.transfer([maps.data.buffer as ArrayBuffer]);
    return maps;
  },
  gradCam: async ({ modelPath, layerPath, classIndex }) => inspector.gradCam(modelPath, layerPath, classIndex),
  finetune: async ({ modelPath, datasetDir, settings, frozen, freeze, memoryLimitMB, outDir, probe }, ctx) => {
    const live = probe ? new LiveMapsProbe(probe) : undefined;
    try {
      const o = { modelJsonPath: modelPath, datasetDir, settings, frozen, freeze, memoryLimitMB, outDir, signal: ctx.signal, onProgress: (p: TrainProgress) => ctx.progress(p), probe: live };
      // An ONNX backbone runs in ONNX Runtime; only a new head trains (engine/onnx/finetune.ts).
      return await (isOnnxPath(modelPath) ? finetuneOnnx(o) : finetune(o));
    } finally {
      live?.dispose();
    }
  },
  compare: async ({ aPath, bPath, imagePath, normalization }, ctx) => {
    const result = await comparer.compare(await session.model(aPath), await session.model(bPath), imagePath, normalization);
    const rgb = result.input.rgb.slice();
    ctx.transfer([rgb.buffer]);
    return { ...result, input: { ...result.input, rgb } };
  },
  compareMaps: async ({ aPath, bPath, layerPath, maxSize }, ctx) => {
    const maps = await comparer.maps(aPath, bPath, layerPath, maxSize);
    ctx.transfer([maps.a.data.buffer, maps.b.data.buffer, maps.diff.data.buffer] as ArrayBuffer[]);
    return maps;
  },
  compareSimilarity: async ({ aPath, bPath, folder, imagePaths, normalization, maxImages }, ctx) => {
    const set = folder ? await listImageSet(folder, maxImages) : undefined;
    const files = set?.files ?? (imagePaths ?? []).slice(0, maxImages);
    return comparer.similarity(await session.model(aPath), await session.model(bPath), files, normalization, {
      folder: set?.folder,
      found: set?.found,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress(p),
    });
  },
  imageThumbnail: ({ path: file, size }) => imageThumbnail(file, size),
  augmentPreview: async ({ imagePath, settings, n, seed, height, width }, ctx) => {
    const img = resizeImage(await readImageFile(imagePath, () => ({ height, width })), height, width);
    const images = previewAugmentations(img, settings, n, seed).map((a) => a.data);
    ctx.transfer(images.map((a) => a.buffer as ArrayBuffer));
    return { width, height, images };
  },
  pretrainRotation: ({ modelPath, imagesDir, settings, outDir, memoryLimitMB }, ctx) =>
    pretrainRotation({ modelJsonPath: modelPath, imagesDir, settings, outDir, memoryLimitMB, signal: ctx.signal, onProgress: (p) => ctx.progress(p) }),
  ...embedHandlers(session),
  memory: () => {
    const m = tf.memory();
    return { numTensors: m.numTensors, numBytes: m.numBytes };
  },
};

function toError(e: unknown): RpcError {
  e = explainTrap(e);
  // A trapped wasm module is in no known state: answer, then end this worker (the next request starts a fresh one).
  if (wasmTrapped()) setTimeout(() => process.exit(1), 50);
  if (e instanceof EngineError) return { code: e.code, message: e.message };
  // A file-system failure no engine code worded still says its cause (never "Internal error: EIO: i/o error").
  const io = fsErrorLine(e);
  if (io) return { code: 'io', message: io };
  return { code: 'internal', message: `Internal error in the compute worker: ${messageOf(e)}` };
}

const rpcPort: Port = { post: (m, transfer) => port.postMessage(m, transfer ?? []) };
const server = new RpcServer<WorkerApi>(rpcPort, handlers, toError);
port.on('message', (m: unknown) => {
  if (isRpcMessage(m)) void server.handle(m);
});
