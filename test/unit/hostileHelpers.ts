/** What the hostile-input tests share: a temporary folder, refusal checks with the exact message, and a memory check. */
import * as tf from '@tensorflow/tfjs';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after } from 'node:test';
import { EngineError } from '../../src/engine/errors';
import { repoRoot } from '../fixtures/hostile';

export const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-hostile-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Asserts that `p` rejects with an EngineError of exactly this code and message. */
export async function refuses(p: Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

export function refusesSync(fn: () => unknown, code: string, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

/** V8's own words for why a text is not JSON (they differ between Node versions). */
export function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('valid JSON');
}

/** Memory the process holds: JS heap, buffers, and the wasm backend's heap (which never shrinks). */
export function memory(): { rss: number; arrayBuffers: number; wasm: number } {
  const m = process.memoryUsage();
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.byteLength ?? 0;
  return { rss: m.rss, arrayBuffers: m.arrayBuffers, wasm };
}

export function assertNoJump(before: ReturnType<typeof memory>, what: string): void {
  const now = memory();
  const mb = (n: number) => Math.round(n / 1048576);
  assert.ok(now.wasm - before.wasm < 64 * 1048576, `${what}: wasm heap grew by ${mb(now.wasm - before.wasm)} MB`);
  assert.ok(now.arrayBuffers - before.arrayBuffers < 64 * 1048576, `${what}: buffers grew by ${mb(now.arrayBuffers - before.arrayBuffers)} MB`);
  assert.ok(now.rss - before.rss < 256 * 1048576, `${what}: the process grew by ${mb(now.rss - before.rss)} MB`);
}

export const moved = "weight files must sit in the model's folder. Move the shard next to model.json and list it by file name.";

/** Every hostile model.json that must be refused, with the code and exact message. */

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * How long a hostile case may run before it counts as hung: a safety net far
 * above any run on a loaded machine (a hang never ends), never a measurement.
 */
export const hangLimit = 600_000;

/** Runs the bundled CLI (in the repository, or `cwd`), killed after `timeoutMs` (the hang safety net); `started` gets the child. */
export function runCli(cli: string, args: string[], timeoutMs = hangLimit, o: { cwd?: string; env?: NodeJS.ProcessEnv; started?: (child: ChildProcess) => void } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { cwd: o.cwd ?? repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    o.started?.(child);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - start });
    });
  });
}

/** sha256 of every file under `dir` (relative path -> hash), links not followed. */
export function hashTree(dir: string): Record<string, string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p, r);
      else if (e.isSymbolicLink()) out[r] = `-> ${fs.readlinkSync(p)}`;
      else out[r] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  walk(dir, '');
  return out;
}
