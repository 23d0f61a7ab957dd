/**
 * Writes that never leave a half-written result: a file goes to a temporary
 * sibling and is renamed over the target; a folder is built under a temporary
 * name and renamed into place at the end. A kill at any moment leaves either
 * the old state or the new one, plus at worst a `.layerlens-tmp-<pid>-*`
 * sibling.
 *
 * Temporary names carry the id of the process that made them, so that a
 * leftover is told from the work of a run still going (several CLI runs, or
 * the editor and a terminal, may write next to one model at once): every
 * temporary entry of ours is removed on every exit path of this process
 * (an error, a cancel, a second Ctrl-C: `removeLiveTempsSync`, also run at
 * process exit), and one left by a process that no longer runs (killed with
 * SIGKILL, the machine lost power) is swept from a folder the next time
 * Layer Lens writes into it (`sweepStaleTemps`).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';

export const tmpTag = '.layerlens-tmp-';
/** `<name>.layerlens-tmp-<pid>-<8 hex>` (ours), or `<name>.layerlens-tmp-<8 hex>` (written before the pid was part of it). */
const tmpPattern = /\.layerlens-tmp-(?:(\d+)-)?[0-9a-f]{8}$/;
/** A leftover without a pid, or of a pid that is alive again after a reboot, is removed once it is this old. */
const staleAfterMs = 24 * 3600 * 1000;

/** Bytes the temporary suffix adds to a name (what a name-length check must leave room for). */
export const tmpSuffixBytes = Buffer.byteLength(`${tmpTag}${2 ** 22}-00000000`);

/**
 * Temporary files and folders of this process that exist now ('tree': ours
 * whole, removed with what is in it), and placeholders of final names taken
 * by placeFolder ('placeholder': removed only while still empty, so that a
 * folder already renamed onto it is never lost).
 */
const live = new Map<string, 'tree' | 'placeholder'>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', removeLiveTempsSync);
}

/** `<name>.layerlens-tmp-<pid>-<8 hex>`: a temporary name for `name` (a base name). */
export function tmpSiblingName(name: string): string {
  return `${name}${tmpTag}${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** A new temporary path next to `target`, registered for removal on every exit path until `release`d. */
export function tmpSibling(target: string): string {
  hookExit();
  const tmp = path.join(path.dirname(target), tmpSiblingName(path.basename(target)));
  live.set(tmp, 'tree');
  return tmp;
}

/** The temporary entry is gone (renamed into place or removed): no longer ours to clean. */
export function releaseTmp(tmp: string): void {
  live.delete(tmp);
}

/** Removes a temporary entry of ours (never following a link). */
export async function removeTmp(tmp: string): Promise<void> {
  await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  live.delete(tmp);
}

/**
 * Removes every temporary entry this process still has, synchronously: for
 * the paths that end the process at once (a second Ctrl-C) and for exit.
 */
export function removeLiveTempsSync(): void {
  for (const [tmp, kind] of live) {
    try {
      if (kind === 'tree') fs.rmSync(tmp, { recursive: true, force: true });
      else fs.rmdirSync(tmp);
    } catch {
      // Best effort: what is left is swept by the next write into the folder.
    }
  }
  live.clear();
}

function processRuns(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary entries of ours in `dir` that no running process
 * owns (or, when `prefix` is given, only those of that target name). A
 * running Layer Lens's entries are left alone.
 */
export async function sweepStaleTemps(dir: string, prefix?: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = tmpPattern.exec(name);
    if (!m || (prefix !== undefined && !name.startsWith(prefix + tmpTag))) continue;
    const p = path.join(dir, name);
    if (live.has(p)) continue;
    const pid = m[1] === undefined ? undefined : Number(m[1]);
    let old = false;
    try {
      old = Date.now() - (await fs.promises.lstat(p)).mtimeMs > staleAfterMs;
    } catch {
      continue;
    }
    if (pid !== undefined && processRuns(pid) && !old) continue;
    if (pid === undefined && !old && prefix === undefined) continue;
    await fs.promises.rm(p, { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

/** Removes temporary siblings left by a killed write of `target` (whose process no longer runs). */
export async function cleanStaleTemps(target: string): Promise<void> {
  await sweepStaleTemps(path.dirname(target), path.basename(target));
}

/**
 * Writes `data` to a temporary sibling, flushed to disk. The caller renames
 * or links it into place, or removes it; it is removed on any error here.
 */
export async function writeTmpFile(target: string, data: string | Uint8Array): Promise<string> {
  const tmp = tmpSibling(target);
  try {
    const handle = await fs.promises.open(tmp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (e) {
    await removeTmp(tmp);
    throw e;
  }
  return tmp;
}

/** Writes `target` atomically, replacing it if it exists (files Layer Lens owns: recipes, caches). */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  const tmp = await writeTmpFile(target, data);
  try {
    await fs.promises.rename(tmp, target);
    releaseTmp(tmp);
  } catch (e) {
    await removeTmp(tmp);
    throw e;
  }
}

/**
 * Moves the built folder `tmp` to `target` without replacing anything: the
 * name is taken first with an exclusive mkdir, and `tmp` renamed onto that
 * empty placeholder (POSIX rename replaces an empty folder atomically), so
 * two runs never get one name and a user's folder is never replaced. When
 * the name is taken and `suffix` is set, `target-2`, `target-3`… are tried;
 * else EngineError 'output-exists'. Returns the name used.
 */
export async function placeFolder(tmp: string, target: string, o: { suffix: boolean }): Promise<string> {
  const taken = () => new EngineError('output-exists', `${target} already exists; Layer Lens never writes over an existing folder.`);
  for (let k = 1; k <= 1000; k++) {
    const name = k === 1 ? target : `${target}-${k}`;
    try {
      await fs.promises.mkdir(name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        if (o.suffix) continue;
        throw taken();
      }
      throw e;
    }
    // Until the rename, an exit removes the empty placeholder (never a folder renamed onto it).
    live.set(name, 'placeholder');
    try {
      await fs.promises.rename(tmp, name);
      live.delete(name);
      releaseTmp(tmp);
      return name;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      live.delete(name);
      // Only our own placeholder, and only while empty (rmdir refuses otherwise).
      await fs.promises.rmdir(name).catch(() => undefined);
      if (code === 'EPERM' || code === 'EACCES') {
        // Windows does not rename onto a folder: the placeholder is gone, rename to the free name.
        try {
          await fs.promises.rename(tmp, name);
          releaseTmp(tmp);
          return name;
        } catch {
          // Fall through: taken meanwhile, or truly not permitted.
        }
      }
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        if (o.suffix) continue;
        throw taken();
      }
      throw e;
    }
  }
  throw taken();
}

/**
 * Builds a folder with `fill(tmpDir)` and moves it to `target`, which must
 * not exist (results never replace a user's folder; see placeFolder). On
 * any error, or if `fill` throws a cancellation, the temporary folder is
 * removed. Returns the name used (`target`, or with a suffix when `suffix`).
 */
export async function writeFolderAtomic(target: string, fill: (tmpDir: string) => Promise<void>, o: { suffix?: boolean } = {}): Promise<string> {
  if (!o.suffix && (await fs.promises.lstat(target).then(() => true, () => false))) {
    throw new EngineError('output-exists', `${target} already exists; Layer Lens never writes over an existing folder.`);
  }
  await sweepStaleTemps(path.dirname(target));
  const tmp = tmpSibling(target);
  try {
    await fs.promises.mkdir(tmp, { recursive: false });
    await fill(tmp);
    return await placeFolder(tmp, target, { suffix: o.suffix ?? false });
  } catch (e) {
    await removeTmp(tmp);
    throw e;
  }
}
