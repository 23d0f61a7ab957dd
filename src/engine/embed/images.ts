/**
 * The images an embedding job (or the rotation pretext task) reads: a folder
 * with one sub-folder per class (scanned and checked by the fine-tune's
 * scanner, so that both see the same files in the same order and the
 * embedding cache serves both), or a flat folder of unlabelled images,
 * listed recursively.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError, EngineError } from '../errors';
import { rel } from '../io/files';
import { scanDataset } from '../train/dataset';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.jpe', '.jfif']);
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
}

export interface ImageFolder {
  dir: string;
  /** Class names for a folder-per-class dataset, null for a flat folder. */
  classes: string[] | null;
  images: ImageEntry[];
  /** Files left out at the scan, with why. */
  skipped: { file: string; detail: string }[];
}

function isHidden(name: string): boolean {
  return name.startsWith('.') || name === 'Thumbs.db' || name === 'desktop.ini' || name === '__MACOSX';
}

export const isImageName = (name: string) => IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());

/** Image files under `dir`, recursively, hidden ones left out, sorted by path. */
export async function listImagesRecursive(dir: string, signal?: AbortSignal): Promise<ImageEntry[]> {
  const root = path.resolve(dir);
  const out: ImageEntry[] = [];
  const walk = async (abs: string, relDir: string, depth: number): Promise<void> => {
    if (signal?.aborted) throw new CancelledError('Listing images');
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(abs, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (isHidden(e.name)) continue;
      const p = path.join(abs, e.name);
      const r = relDir ? `${relDir}/${e.name}` : e.name;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await fs.promises.stat(p).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isDir && depth < MAX_DEPTH) await walk(p, r, depth + 1);
      else if (isFile && isImageName(e.name)) {
        out.push({ file: p, rel: r, label: -1 });
        if (out.length > MAX_IMAGES) {
          throw new EngineError('bad-dataset', `${rel(root)} holds more than ${MAX_IMAGES} images; pick a smaller folder.`);
        }
      }
    }
  };
  await walk(root, '', 0);
  return out;
}

/**
 * A folder-per-class dataset when `dir` has no images of its own and at least
 * two sub-folders (read by scanDataset, which checks every file); otherwise a
 * flat folder of images, recursively.
 */
export async function scanImageFolder(dir: string, signal?: AbortSignal): Promise<ImageFolder> {
  const root = path.resolve(dir);
  let entries: fs.Dirent[];
  try {
    const st = await fs.promises.stat(root);
    if (!st.isDirectory()) throw new EngineError('bad-dataset', `${rel(root)} is a file, not a folder; choose a folder of images.`);
    entries = await fs.promises.readdir(root, { withFileTypes: true });
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('not-found', `image folder ${rel(root)} does not exist or cannot be read.`);
  }
  const visible = entries.filter((e) => !isHidden(e.name));
  const looseImages = visible.some((e) => e.isFile() && isImageName(e.name));
  const subdirs = visible.filter((e) => e.isDirectory() || e.isSymbolicLink());
  if (!looseImages && subdirs.length >= 2) {
    const scan = await scanDataset(root, { signal });
    return {
      dir: scan.dir,
      classes: scan.classes,
      images: scan.images.map((im) => ({ file: im.file, rel: im.rel, label: im.label })),
      skipped: scan.skipped.map((s) => ({ file: s.file, detail: s.detail })),
    };
  }
  const images = await listImagesRecursive(root, signal);
  if (images.length === 0) {
    throw new EngineError('bad-dataset', `${rel(root)} holds no PNG or JPEG images (hidden folders are not read); choose a folder of images, or one with a sub-folder of images per class.`);
  }
  return { dir: root, classes: null, images, skipped: [] };
}
