/**
 * The images an embedding job (or the rotation pretext task) reads: a folder
 * with one sub-folder per class (scanned and checked by the fine-tune's
 * scanner, so that both see the same files in the same order and the
 * embedding cache serves both), or a flat folder of unlabelled images,
 * listed recursively.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { rel } from '../io/files';
import { entryKind, isHidden, isImageName, TreeWalk, walkRoot } from '../io/walk';
import { scanDataset } from '../train/dataset';
import type { SkippedFile } from '../../protocol/train';

/** Folder levels below the folder that are read. */
const MAX_DEPTH = 8;
/** More images than this in one folder is a mistake (a whole disk picked). */
export const MAX_IMAGES = 200_000;

export interface ImageEntry {
  /** Absolute path. */
  file: string;
  /** Relative to the folder, "/"-separated. */
  rel: string;
  /** Class index, or -1 for a flat folder. */
  label: number;
  /** Reached through a link to outside the folder: messages never quote its bytes. */
  outside?: boolean;
}

export interface ImageFolder {
  dir: string;
  /** Class names for a folder-per-class dataset, null for a flat folder. */
  classes: string[] | null;
  images: ImageEntry[];
  /** Files left out at the scan, with why. */
  skipped: { file: string; detail: string }[];
  /** What the scan decided that the user should know (class folders merged). */
  warnings: string[];
}

export { isImageName };

/**
 * Image files under `dir`, recursively (io/walk.ts: each file once, loops not
 * followed, folders past 8 levels named), hidden ones left out, sorted by path.
 */
export async function listImagesRecursive(dir: string, signal?: AbortSignal): Promise<{ images: ImageEntry[]; skipped: SkippedFile[] }> {
  const root = path.resolve(dir);
  const { real, stats } = await walkRoot(root, rel(root), 'image folder');
  const walk = new TreeWalk(real, {
    maxDepth: MAX_DEPTH,
    imagesOnly: true,
    maxFiles: MAX_IMAGES,
    tooMany: () => new EngineError('bad-dataset', `${rel(root)} holds more than ${MAX_IMAGES} images; pick a smaller folder.`),
    signal,
    doing: 'Listing images',
  });
  walk.enterDir(stats, '');
  const files = await walk.list(root, '', 0);
  return {
    images: files.map((f) => ({ file: f.abs, rel: f.rel, label: -1, ...(f.outside ? { outside: true } : {}) })),
    skipped: walk.skipped,
  };
}

/**
 * A folder-per-class dataset when `dir` has no images of its own and at least
 * two sub-folders (read by scanDataset, which checks every file); otherwise a
 * flat folder of images, recursively.
 */
export async function scanImageFolder(dir: string, signal?: AbortSignal): Promise<ImageFolder> {
  const root = path.resolve(dir);
  let names: string[];
  try {
    const st = await fs.promises.stat(root);
    if (!st.isDirectory()) throw new EngineError('bad-dataset', `${rel(root)} is a file, not a folder; choose a folder of images.`);
    names = (await fs.promises.readdir(root)).filter((n) => !isHidden(n));
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('not-found', `image folder ${rel(root)} does not exist or cannot be read.`);
  }
  const kinds = await Promise.all(names.map((n) => entryKind(path.join(root, n), n)));
  const looseImages = kinds.some((k, i) => k.kind === 'file' && isImageName(names[i]));
  const subdirs = kinds.filter((k) => k.kind === 'dir').length;
  if (!looseImages && subdirs >= 2) {
    const scan = await scanDataset(root, { signal });
    return {
      dir: scan.dir,
      classes: scan.classes,
      images: scan.images.map((im) => ({ file: im.file, rel: im.rel, label: im.label, ...(im.outside ? { outside: true } : {}) })),
      skipped: scan.skipped.map((s) => ({ file: s.file, detail: s.detail })),
      warnings: scan.warnings,
    };
  }
  const { images, skipped } = await listImagesRecursive(root, signal);
  if (images.length === 0) {
    throw new EngineError('bad-dataset', `${rel(root)} holds no PNG or JPEG images (hidden folders are not read); choose a folder of images, or one with a sub-folder of images per class.`);
  }
  return { dir: root, classes: null, images, skipped, warnings: [] };
}
