/**
 * Writes that never leave a half-written result: a file goes to a temporary
 * sibling and is renamed over the target; a folder is built under a temporary
 * name and renamed into place at the end. A kill at any moment leaves either
 * the old state or the new one (plus, at worst, a `.layerlens-tmp-*` sibling
 * that the next write of the same target cleans up).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const tmpTag = '.layerlens-tmp-';

function tmpSibling(target: string): string {
  return path.join(path.dirname(target), `${path.basename(target)}${tmpTag}${randomBytes(4).toString('hex')}`);
}

export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  const tmp = tmpSibling(target);
  const handle = await fs.promises.open(tmp, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(tmp, target);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}

/** Removes temporary siblings left by a killed write of `target`. */
export async function cleanStaleTemps(target: string): Promise<void> {
  const dir = path.dirname(target);
  const prefix = path.basename(target) + tmpTag;
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => fs.promises.rm(path.join(dir, n), { recursive: true, force: true })));
}

/**
 * Builds a folder with `fill(tmpDir)` and renames it to `target`, which must
 * not exist (results never replace a user's folder). On any error, or if
 * `fill` throws a cancellation, the temporary folder is removed.
 */
export async function writeFolderAtomic(target: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  if (fs.existsSync(target)) throw new Error(`${target} already exists; Layer Lens never writes over an existing folder.`);
  await cleanStaleTemps(target);
  const tmp = tmpSibling(target);
  await fs.promises.mkdir(tmp, { recursive: false });
  try {
    await fill(tmp);
    await fs.promises.rename(tmp, target);
  } catch (e) {
    await fs.promises.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
