/**
 * The engine's state in one process (the worker, or the CLI): loaded models
 * by path. A model is reloaded when its model.json changed on disk.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from './errors';
import { disposeModel, loadModel, type LoadedModel } from './model';

interface Entry {
  model: LoadedModel;
  mtimeMs: number;
}

export class EngineSession {
  private readonly models = new Map<string, Entry>();

  async model(modelJsonPath: string, options: { reload?: boolean } = {}): Promise<LoadedModel> {
    const key = path.resolve(modelJsonPath);
    let mtimeMs = -1;
    try {
      mtimeMs = (await fs.promises.stat(key)).mtimeMs;
    } catch {
      // loadModel reports the missing file with its own message.
    }
    const cached = this.models.get(key);
    if (cached && !options.reload && cached.mtimeMs === mtimeMs) return cached.model;
    const model = await loadModel(key);
    if (cached) disposeModel(cached.model);
    this.models.set(key, { model, mtimeMs });
    return model;
  }

  /** The loaded layers model, or a clear error for graph models. */
  async layersModel(modelJsonPath: string, purpose: string): Promise<{ loaded: LoadedModel; model: tf.LayersModel }> {
    const loaded = await this.model(modelJsonPath);
    if (!loaded.layers) {
      throw new EngineError('bad-input', `${path.basename(modelJsonPath)} is a graph model (inference only); ${purpose} needs a layers model.`);
    }
    return { loaded, model: loaded.layers };
  }

  unload(modelJsonPath: string): void {
    const key = path.resolve(modelJsonPath);
    const cached = this.models.get(key);
    if (cached) disposeModel(cached.model);
    this.models.delete(key);
  }

  dispose(): void {
    for (const e of this.models.values()) disposeModel(e.model);
    this.models.clear();
  }
}
