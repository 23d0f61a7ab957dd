/**
 * The images a similarity measure runs on: PNG and JPEG files under a folder
 * (a dataset with one sub-folder per class, or any folder), sorted by path
 * and, when there are more than wanted, picked evenly along that order so
 * that every class folder is represented. Deterministic; bounded walk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { rel } from '../io/files';
import { resolveStat } from '../io/safeRead';
import { isKernelPath, TreeWalk } from '../io/walk';

/** Folder levels below the root that are searched. */
const MAX_DEPTH = 4;
/** Images listed at most (a huge folder is sampled from its first ones). */
const MAX_FILES = 200_000;

export interface ImageSet {
  folder: string;
  /** Images found (before picking). */
  found: number;
  /** The picked images, sorted. */
  files: string[];
}

/** Up to `max` images from `folder` (io/walk.ts: each file once, loops not followed), evenly spread over its sorted list. */
export async function listImageSet(folder: string, max: number): Promise<ImageSet> {
  const root = path.resolve(folder);
  let real: string;
  let stats: fs.Stats;
  try {
    ({ real, stats } = await resolveStat(root));
  } catch {
    throw new EngineError('not-found', `the image folder ${rel(root)} does not exist.`);
  }
  if (!stats.isDirectory()) throw new EngineError('bad-input', `${rel(root)} is not a folder; name a folder of PNG or JPEG images.`);
  if (isKernelPath(real)) throw new EngineError('bad-input', `${rel(root)} is a folder of the kernel (${real}), not a folder of images.`);
  const walk = new TreeWalk(real, { maxDepth: MAX_DEPTH, imagesOnly: true, maxFiles: MAX_FILES });
  walk.enterDir(stats, '');
  const found = (await walk.list(root, '', 0)).map((f) => f.abs);
  return { folder: root, found: found.length, files: pickEvenly(found, max) };
}

/** `max` items spread evenly over `items` (all of them when there are fewer). */
export function pickEvenly<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  return Array.from({ length: max }, (_, i) => items[Math.floor(((i + 0.5) * items.length) / max)]);
}
