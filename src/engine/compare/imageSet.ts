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

const IMAGE = /\.(png|jpe?g)$/i;
/** Folder levels below the root that are searched. */
const MAX_DEPTH = 4;
/** Directory entries read at most (a huge folder is sampled from its first entries). */
const MAX_ENTRIES = 200_000;

export interface ImageSet {
  folder: string;
  /** Images found (before picking). */
  found: number;
  /** The picked images, sorted. */
  files: string[];
}

/** Up to `max` images from `folder`, evenly spread over its sorted list. */
export async function listImageSet(folder: string, max: number): Promise<ImageSet> {
  const root = path.resolve(folder);
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(root);
  } catch {
    throw new EngineError('not-found', `the image folder ${rel(root)} does not exist.`);
  }
  if (!st.isDirectory()) throw new EngineError('bad-input', `${rel(root)} is not a folder; name a folder of PNG or JPEG images.`);
  const found: string[] = [];
  let entries = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    let list: fs.Dirent[];
    try {
      list = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    list.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    for (const e of list) {
      if (++entries > MAX_ENTRIES) return;
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      // Symbolic links are not followed: a link could lead out of the folder, or in a circle.
      if (e.isFile() && IMAGE.test(e.name)) found.push(p);
      else if (e.isDirectory() && depth < MAX_DEPTH) await walk(p, depth + 1);
    }
  };
  await walk(root, 0);
  return { folder: root, found: found.length, files: pickEvenly(found, max) };
}

/** `max` items spread evenly over `items` (all of them when there are fewer). */
export function pickEvenly<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  return Array.from({ length: max }, (_, i) => items[Math.floor(((i + 0.5) * items.length) / max)]);
}
