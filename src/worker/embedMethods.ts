/**
 * The worker's embedding methods (src/worker/worker.ts spreads these into
 * its handlers): compute and cache, project to a map, neighbours and
 * thumbnails of a map's points, the Projector export and the advisor.
 */
import { computeEmbeddings } from '../engine/embed/compute';
import { adviseOn, EmbeddingSets, exportProjector, neighbors, projectSet, thumbnail } from '../engine/embed/latent';
import type { EngineSession } from '../engine/session';
import type { Handlers } from '../protocol/rpc';
import type { WorkerApi } from '../protocol/workerApi';

export type EmbedMethod = 'computeEmbeddings' | 'latentMap' | 'latentNeighbors' | 'latentThumbnail' | 'exportProjector' | 'advise';

export function embedHandlers(session: EngineSession, sets = new EmbeddingSets()): Pick<Handlers<WorkerApi>, EmbedMethod> {
  return {
    computeEmbeddings: async ({ modelPath, datasetDir, layer, normalization }, ctx) => {
      const loaded = await session.model(modelPath);
      const held = sets.add(await computeEmbeddings({ loaded, datasetDir, layer, normalization, signal: ctx.signal, onProgress: (p) => ctx.progress(p) }));
      return sets.summary(held);
    },
    latentMap: async ({ modelPath, datasetDir, layer, normalization, method, seed }, ctx) => {
      const loaded = await session.model(modelPath);
      const held = sets.add(await computeEmbeddings({ loaded, datasetDir, layer, normalization, signal: ctx.signal, onProgress: (p) => ctx.progress(p) }));
      const map = await projectSet(held, sets.summary(held), method, { seed, signal: ctx.signal, onProgress: (p) => ctx.progress(p) });
      ctx.transfer([map.xy.buffer as ArrayBuffer]);
      return { ...map, labels: map.labels.slice() };
    },
    latentNeighbors: ({ setId, index, k }) => neighbors(sets.get(setId), index, k),
    latentThumbnail: ({ setId, index, size }) => thumbnail(sets.get(setId), index, size),
    exportProjector: ({ setId, dir, force }) => exportProjector(sets.get(setId), dir, { force }),
    advise: async ({ modelPath, datasetDir, learningRate, seed, normalization }, ctx) => {
      const loaded = await session.model(modelPath);
      // The recipe's preprocessing, as the fine-tune uses it: the same embeddings, the same cache.
      const held = sets.add(await computeEmbeddings({ loaded, datasetDir, normalization, signal: ctx.signal, onProgress: (p) => ctx.progress(p) }));
      ctx.progress({ type: 'probe', message: 'Training a linear probe on the embeddings…' });
      return adviseOn(loaded, held, { seed, learningRate });
    },
  };
}
