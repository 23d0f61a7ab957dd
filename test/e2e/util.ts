// The end-to-end tests' constants (paths, versions, time limits) and small
// utilities: debug output, waiting on a condition, a free port.
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CODE_SERVER_VERSION = '4.100.3';
/** Screenshots, and logs of failed sessions (git-ignored). */
export const RESULTS_DIR = path.join(REPO_ROOT, 'test-results', 'e2e');
export const CACHE_DIR = process.env.LAYER_LENS_E2E_CACHE ?? path.join(REPO_ROOT, '.cache', 'e2e');
export const CODE_SERVER_DIR = path.join(CACHE_DIR, `code-server-${CODE_SERVER_VERSION}`);
export const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium';

/** Timeouts in ms. Generous: CI machines have 2 cores. */
export const TIMEOUT = {
  server: 60_000,
  workbench: 90_000,
  ui: 30_000,
} as const;

export type Theme = 'light' | 'dark' | 'hc';
export const THEMES: Record<Theme, string> = { light: 'Default Light Modern', dark: 'Default Dark Modern', hc: 'Default High Contrast' };

// ---------------------------------------------------------------------------
// Small utilities

export const started = Date.now();
/** Progress lines on stderr with E2E_DEBUG=1 (to see where the time goes). */
export function debug(message: string): void {
  if (process.env.E2E_DEBUG) process.stderr.write(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a value other than undefined, or throws with `what`. */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeout: number = TIMEOUT.ui,
  interval = 100,
): Promise<T> {
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${cause}`);
    }
    await sleep(interval);
  }
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function exactText(text: string): RegExp {
  return new RegExp(`^\\s*${escapeRegExp(text)}\\s*$`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

export function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
