/**
 * Lowers the scheduling priority of the calling thread (not its process), so
 * that heavy compute in a worker thread yields the CPU to the extension host
 * and VS Code's UI when they want it, and takes all of it when they do not.
 * On a two-core machine a fine-tune keeps one core busy; without this the
 * extension host's event loop waited up to ~100 ms for a core under load.
 *
 * Linux only: a thread's id comes from /proc/thread-self, and setpriority()
 * with a thread id applies to that thread. Elsewhere (and in a sandbox that
 * refuses it) nothing changes and the reason is returned.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

/** Niceness of the compute threads: above normal (0), well short of idle-only (19). */
export const COMPUTE_NICENESS = 5;

export function lowerThreadPriority(niceness = COMPUTE_NICENESS): { ok: true; tid: number } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `not available on ${process.platform}` };
  try {
    const tid = Number(lastSegment(fs.readlinkSync('/proc/thread-self')));
    if (!Number.isInteger(tid) || tid <= 0) return { ok: false, reason: 'no thread id in /proc/thread-self' };
    if (os.getPriority(tid) < niceness) os.setPriority(tid, niceness);
    return { ok: true, tid };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** "1234/task/1240" → "1240". */
function lastSegment(link: string): string {
  return link.slice(link.lastIndexOf('/') + 1);
}
