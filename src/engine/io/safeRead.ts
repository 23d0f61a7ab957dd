/**
 * Reading a stranger's file without hanging or reading what is not a file.
 *
 * A read that never returns cannot be cancelled: it holds one of libuv's
 * threads, and a Node process waits for those at exit, so not even
 * process.exit() ends it (measured: a read of /proc/kmsg, which reports
 * itself as an empty regular file and blocks until the kernel logs
 * something). So nothing is read before it is known to be an ordinary file
 * on a disk:
 *
 * - the path is resolved (symlinks followed) and stat'ed: folders, FIFOs,
 *   devices and sockets are refused by kind, before any open;
 * - files of the kernel's pseudo file systems (/proc, /sys, debugfs, cgroup…:
 *   by path and by the file system's type) are refused;
 * - the file is opened non-blocking and checked again (the same file, still
 *   regular), then exactly the size stat gave is read, never "until the end"
 *   (a file that grows, or claims 0 bytes and streams, is not followed);
 * - every chunk must arrive within a time limit (a hung network drive):
 *   past it the file is given up and the read left behind is counted, so a
 *   CLI can end itself by a signal instead of waiting for it at exit.
 *
 * Files over 2 GiB (Node's readFile limit) are read in chunks into one buffer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { errnoOf, fsCauseOrMessage } from './fsErrors';

export const readLimits = {
  /** Longest wait for one chunk of a read. */
  chunkTimeoutMs: 30_000,
  /** Bytes asked of the file system at once. */
  chunkBytes: 64 * 1024 * 1024,
};

let stuck = 0;

/** Reads given up after the time limit whose threads are still blocked (the process cannot exit normally while there are any). */
export function stuckReads(): number {
  return stuck;
}

export type UnreadableKind = 'missing' | 'loop' | 'special' | 'kernel' | 'too-large' | 'timeout' | 'changed' | 'io';

/**
 * A file that cannot be read as an ordinary file. `detail` completes a
 * sentence that starts with the file's name ("is not a regular file (a FIFO)").
 */
export class UnreadableFile extends EngineError {
  constructor(
    readonly kind: UnreadableKind,
    readonly shown: string,
    readonly detail: string,
    readonly errno?: string,
  ) {
    super(kind === 'missing' ? 'not-found' : 'unreadable', `${shown} ${detail}.`);
    this.name = 'UnreadableFile';
  }
}

/** Linux statfs magic numbers of pseudo file systems whose "files" are the kernel's (and may block, stream or have effects). */
const pseudoFsTypes = new Set([
  0x9fa0, // proc
  0x62656572, // sysfs
  0x64626720, // debugfs
  0x74726163, // tracefs
  0x1cd1, // devpts
  0x27e0eb, // cgroup
  0x63677270, // cgroup2
  0x73636673, // securityfs
  0xcafe4a11, // bpf
  0x6165676c, // pstore
  0x62656570, // configfs
  0x65735543, // fusectl
  0xf97cff8c, // selinuxfs
  0x42494e4d, // binfmt_misc
  0xde5e81e4, // efivarfs
]);
const pseudoByDevice = new Map<number, boolean>();

const kernelPrefixes = ['/proc/', '/sys/', '/dev/'];

/** A real path on the kernel's pseudo file systems (/proc, /sys, /dev): never walked or read. */
export function isKernelPath(real: string): boolean {
  return process.platform !== 'win32' && kernelPrefixes.some((p) => (real + '/').startsWith(p));
}

/** `p` with every link resolved, and its stats (the errno error of realpath or stat as thrown). */
export async function resolveStat(p: string): Promise<{ real: string; stats: fs.Stats }> {
  const real = await fs.promises.realpath(p);
  return { real, stats: await fs.promises.stat(real) };
}

async function onPseudoFs(real: string, st: fs.Stats): Promise<boolean> {
  if (isKernelPath(real)) return true;
  const known = pseudoByDevice.get(st.dev);
  if (known !== undefined) return known;
  let pseudo = false;
  try {
    pseudo = pseudoFsTypes.has(Number((await fs.promises.statfs(real)).type));
  } catch {
    // No statfs (or not allowed): the path check above stands.
  }
  pseudoByDevice.set(st.dev, pseudo);
  return pseudo;
}

/** "a folder", "a FIFO"…: what a non-regular file is. */
export function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

export interface RegularFile {
  /** The path with every symlink resolved. */
  real: string;
  stats: fs.Stats;
}

/** Whether the links from `p` end in a kernel object that is no file ("pipe:[123]", "socket:[…]": /dev/stdin of a pipe). */
async function endsInPipe(p: string): Promise<boolean> {
  let cur = p;
  for (let hop = 0; hop < 8; hop++) {
    const to = await fs.promises.readlink(cur).catch(() => undefined);
    if (to === undefined) return false;
    if (/^[a-z_]+:\[\d+\]$/.test(to)) return true;
    cur = path.resolve(path.dirname(cur), to);
  }
  return false;
}

/** Why `p` could not be resolved and stat'ed (`e`, from resolveStat), in words that follow its name. */
export async function unresolvable(e: unknown, p: string): Promise<{ kind: UnreadableKind; detail: string; errno?: string }> {
  const errno = errnoOf(e);
  if (errno === 'ENOENT') {
    const link = await fs.promises.lstat(p).then((s) => s.isSymbolicLink(), () => false);
    if (link && (await endsInPipe(p))) return { kind: 'special', detail: 'is a pipe, socket or terminal, not a file', errno };
    return { kind: 'missing', detail: link ? 'is a broken symbolic link' : 'does not exist', errno };
  }
  if (errno === 'ELOOP') return { kind: 'loop', detail: 'is inside a symbolic link loop', errno };
  return { kind: 'io', detail: `cannot be read (${fsCauseOrMessage(e)})`, errno };
}

/**
 * Resolves `file` and checks that it is an ordinary file on a disk, opening
 * nothing. Throws UnreadableFile (named `shown`) otherwise.
 */
export async function checkRegularFile(file: string, shown: string): Promise<RegularFile> {
  let real: string;
  let stats: fs.Stats;
  try {
    ({ real, stats } = await resolveStat(file));
  } catch (e) {
    const why = await unresolvable(e, file);
    throw new UnreadableFile(why.kind, shown, why.detail, why.errno);
  }
  if (!stats.isFile()) throw new UnreadableFile('special', shown, `is not a regular file (${kindOf(stats)})`);
  if (await onPseudoFs(real, stats)) {
    throw new UnreadableFile('kernel', shown, `is a file of the kernel (${real}), not a file on a disk`);
  }
  return { real, stats };
}

export interface ReadOptions {
  /** How messages name the file. */
  shown: string;
  /** Larger files are refused before reading (with `tooLarge`'s error when given). */
  maxBytes: number;
  tooLarge?: (size: number) => Error;
  /** Read into this buffer at `offset` instead of a new one; the file must be exactly `expectBytes` long. */
  into?: { buffer: Uint8Array; offset: number };
  /** The size the caller was told (a shard's); a file of another size is refused as changed. */
  expectBytes?: number;
  /** Read only the first `head` bytes (to tell what a file is without reading all of it). */
  head?: number;
}

function withTimeout<T>(p: Promise<T>, shown: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      stuck++;
      const s = Math.round(readLimits.chunkTimeoutMs / 1000);
      reject(new UnreadableFile('timeout', shown, `did not answer within ${s} s (a hung network drive, or a device that is no file); it was left unread`));
    }, readLimits.chunkTimeoutMs);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/**
 * The bytes of an ordinary file, read as the module comment says. An empty
 * file gives an empty array without being opened (the caller says "empty"
 * in its own words).
 */
export async function readRegularFile(file: string, o: ReadOptions): Promise<Uint8Array> {
  const { real, stats } = await checkRegularFile(file, o.shown);
  if (o.expectBytes !== undefined && stats.size !== o.expectBytes) throw new UnreadableFile('changed', o.shown, `changed size while it was being read (${stats.size} bytes, not ${o.expectBytes})`);
  if (o.head === undefined && stats.size > o.maxBytes) {
    throw o.tooLarge?.(stats.size) ?? new UnreadableFile('too-large', o.shown, `is ${(stats.size / 1048576).toFixed(0)} MB, over the ${(o.maxBytes / 1048576).toFixed(0)} MB Layer Lens reads of such a file`);
  }
  const size = o.head !== undefined ? Math.min(o.head, stats.size) : stats.size;
  const out = o.into ? o.into.buffer.subarray(o.into.offset, o.into.offset + size) : new Uint8Array(size);
  if (out.length !== size) throw new EngineError('internal', `readRegularFile: ${size} bytes do not fit at ${o.into?.offset}.`);
  if (size === 0) return out;
  let handle: fs.promises.FileHandle;
  try {
    handle = await withTimeout(fs.promises.open(real, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0) | (fs.constants.O_NOCTTY ?? 0)), o.shown);
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new UnreadableFile('io', o.shown, `cannot be read (${fsCauseOrMessage(e)})`, errnoOf(e));
  }
  let abandoned = false;
  try {
    const now = await handle.stat();
    if (!now.isFile() || now.ino !== stats.ino || now.dev !== stats.dev) throw new UnreadableFile('changed', o.shown, 'was replaced while it was being opened');
    let done = 0;
    while (done < size) {
      const want = Math.min(readLimits.chunkBytes, size - done);
      let n: number;
      try {
        ({ bytesRead: n } = await withTimeout(handle.read(out, done, want, done), o.shown));
      } catch (e) {
        if (e instanceof UnreadableFile && e.kind === 'timeout') abandoned = true;
        if (e instanceof EngineError) throw e;
        throw new UnreadableFile('io', o.shown, `cannot be read (${fsCauseOrMessage(e)})`, errnoOf(e));
      }
      if (n === 0) throw new UnreadableFile('changed', o.shown, `became shorter while it was being read (${done} of ${size} bytes)`);
      done += n;
    }
    return out;
  } finally {
    // A read still blocked holds the handle; closing it would only queue behind the read.
    if (!abandoned) await handle.close().catch(() => undefined);
  }
}

/**
 * A small ordinary file's text, synchronously (for the extension host, which
 * must never block: a metadata.json that is a FIFO or a link to /proc/kmsg
 * would stop the editor). Undefined when it is missing, not an ordinary
 * file on a disk, empty, or larger than `maxBytes`.
 */
export function readSmallFileSync(file: string, maxBytes: number): string | undefined {
  try {
    const real = fs.realpathSync(file);
    const st = fs.statSync(real);
    if (!st.isFile() || st.size === 0 || st.size > maxBytes || isKernelPath(real)) return undefined;
    const fd = fs.openSync(real, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    try {
      const buf = Buffer.alloc(st.size);
      let done = 0;
      while (done < st.size) {
        const n = fs.readSync(fd, buf, done, st.size - done, done);
        if (n === 0) break;
        done += n;
      }
      return buf.subarray(0, done).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/** True when `real` is `root` or inside it (both real paths). */
export function isInside(real: string, root: string): boolean {
  const r = path.relative(root, real);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}
