/**
 * Saves a layers model as model.json + weight shards (the format tfjs and
 * tensorflowjs_converter write), into a new folder, atomically.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFolderAtomic } from './atomic';

export interface SaveOptions {
  /** Split weights into shards of at most this many bytes (tfjs default 4 MB). */
  shardBytes?: number;
  /** Other files to write into the folder (metadata.json, metrics.csv, ...). */
  extraFiles?: Record<string, string | Uint8Array>;
  /** Extra fields merged into model.json (userDefinedMetadata and the like). */
  userDefinedMetadata?: Record<string, unknown>;
}

/** Serialises a model to in-memory artifacts (topology, specs, weight bytes). */
export async function modelArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!captured) throw new Error('tfjs produced no model artifacts');
  return captured;
}

/** The weight data of artifacts as one byte array (tfjs may hand it over in pieces). */
export function weightBytes(artifacts: tf.io.ModelArtifacts): Uint8Array {
  const data = artifacts.weightData;
  if (!data) return new Uint8Array(0);
  if (Array.isArray(data)) {
    const total = data.reduce((a, b) => a + b.byteLength, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const b of data) {
      out.set(new Uint8Array(b), o);
      o += b.byteLength;
    }
    return out;
  }
  return new Uint8Array(data);
}

/** Writes artifacts as files into an existing folder (used inside atomic writes). */
export async function writeArtifacts(dir: string, artifacts: tf.io.ModelArtifacts, options: SaveOptions = {}): Promise<void> {
  const bytes = weightBytes(artifacts);
  const shardBytes = options.shardBytes ?? 4 * 1024 * 1024;
  const count = Math.max(1, Math.ceil(bytes.byteLength / shardBytes));
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = count === 1 ? 'weights.bin' : `group1-shard${i + 1}of${count}.bin`;
    paths.push(name);
    await fs.promises.writeFile(path.join(dir, name), bytes.subarray(i * shardBytes, Math.min(bytes.byteLength, (i + 1) * shardBytes)));
  }
  const json: Record<string, unknown> = {
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: artifacts.convertedBy ?? 'Layer Lens',
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths, weights: artifacts.weightSpecs ?? [] }],
  };
  if (artifacts.trainingConfig) json['trainingConfig'] = artifacts.trainingConfig;
  const meta = { ...(artifacts.userDefinedMetadata ?? {}), ...(options.userDefinedMetadata ?? {}) };
  if (Object.keys(meta).length > 0) json['userDefinedMetadata'] = meta;
  await fs.promises.writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
  for (const [name, content] of Object.entries(options.extraFiles ?? {})) {
    await fs.promises.writeFile(path.join(dir, name), content);
  }
}

/** Saves `model` into the new folder `target` (refuses to overwrite). */
export async function saveLayersModel(model: tf.LayersModel, target: string, options: SaveOptions = {}): Promise<void> {
  const artifacts = await modelArtifacts(model);
  await writeFolderAtomic(target, (tmp) => writeArtifacts(tmp, artifacts, options));
}
