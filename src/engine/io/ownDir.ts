/**
 * Layer Lens's own folders inside a model's folder (`.layerlens/…`: the
 * embedding caches, the advisor's report). A stranger's model folder may
 * hold `.layerlens -> ../victim`; following it would write (and delete
 * stale cache files) in someone else's folder. So each level is made on its
 * own (mkdir, never recursive through a link) and checked with lstat to be a
 * real folder, not a link, and the result's real path must be the model
 * folder's real path plus those names.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { rel } from './files';
import { errnoOf } from './fsErrors';

/** A level of our folder is a link or not a folder: nothing is written or read through it. */
export class NotOurFolder extends EngineError {
  constructor(message: string) {
    super('unsafe-path', message);
    this.name = 'NotOurFolder';
  }
}

async function checkLevel(p: string): Promise<boolean> {
  let st: fs.Stats;
  try {
    st = await fs.promises.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return false;
    throw e;
  }
  if (st.isSymbolicLink()) {
    const to = await fs.promises.readlink(p).catch(() => '?');
    throw new NotOurFolder(`${rel(p)} is a symbolic link (to ${to}); Layer Lens keeps its files only in a real folder inside the model's folder, and does not follow it. Remove the link.`);
  }
  if (!st.isDirectory()) throw new NotOurFolder(`${rel(p)} is a file, where Layer Lens keeps a folder of its own; remove or rename it.`);
  return true;
}

/**
 * `<real modelFolder>/<segments…>`, made level by level when `create`
 * (errors of mkdir, such as EROFS, are thrown as they are), checked as the
 * module comment says. Without `create`, undefined when a level is missing.
 */
export async function ownDir(modelFolder: string, segments: string[], o: { create: boolean }): Promise<string | undefined> {
  const base = await fs.promises.realpath(modelFolder);
  let cur = base;
  for (const seg of segments) {
    if (seg === '' || seg === '.' || seg === '..' || seg.includes('/') || seg.includes(path.sep)) throw new EngineError('internal', `ownDir: bad segment "${seg}".`);
    cur = path.join(cur, seg);
    if (await checkLevel(cur)) continue;
    if (!o.create) return undefined;
    try {
      await fs.promises.mkdir(cur);
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
    }
    if (!(await checkLevel(cur))) throw new NotOurFolder(`${rel(cur)} vanished while it was being made.`);
  }
  const real = await fs.promises.realpath(cur);
  if (real !== cur) throw new NotOurFolder(`${rel(cur)} resolves to ${real}, outside the model's folder; Layer Lens does not write there.`);
  return cur;
}
