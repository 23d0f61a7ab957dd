/**
 * Where the repository is, and the few things the demo scripts do in it:
 * run a command with the terminal's stdio, show a path as the user types it,
 * build the bundles when they are missing.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..');
const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');

/** Runs a command with the terminal's stdio (the CLI's progress bar needs it); resolves to its exit code. */
export function run(command: string, args: string[], cwd = REPO_ROOT): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** A path as the user should type it: relative to the repo when inside it. */
export function shown(p: string): string {
  const r = path.relative(REPO_ROOT, p);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
}

/** Builds the bundles when dist/ has no CLI (a fresh clone). */
export async function ensureBuilt(write: (s: string) => void, file = CLI): Promise<void> {
  if (fs.existsSync(file)) return;
  write(`${shown(file)} is missing: building (node esbuild.mjs)…\n`);
  const code = await run(process.execPath, [path.join(REPO_ROOT, 'esbuild.mjs')]);
  if (code !== 0 || !fs.existsSync(file)) throw new Error(`the build failed (exit ${code}); run \`npm run build\` to see why`);
}
