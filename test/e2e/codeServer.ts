// code-server (installed by scripts/e2e/setup.sh into .cache/e2e/) started
// on 127.0.0.1, and the extension installed into it the way a user gets it.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, CODE_SERVER_VERSION, CODE_SERVER_DIR, TIMEOUT, sleep, waitUntil, freePort, tail } from './util';

// ---------------------------------------------------------------------------
// code-server

export interface CodeServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly logFile: string;
  /** Kills the whole process group (server, extension host, pty host, watchers). */
  stop(): Promise<void>;
}

export interface CodeServerOptions {
  workspace: string;
  userDataDir: string;
  extensionsDir: string;
  /** Folder for code-server's own config file and XDG dirs, and the log. */
  stateDir: string;
}

export function codeServerEntry(): string {
  const entry = path.join(CODE_SERVER_DIR, 'out', 'node', 'entry.js');
  if (!existsSync(path.join(CODE_SERVER_DIR, '.layer-lens-ready')) || !existsSync(entry)) {
    throw new Error(
      `code-server ${CODE_SERVER_VERSION} is not set up in ${CODE_SERVER_DIR}: run \`bash scripts/e2e/setup.sh\``,
    );
  }
  return entry;
}

/** The environment for code-server: ours, minus anything that would make it talk to another VS Code. */
export function serverEnv(stateDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('VSCODE_') || key === 'ELECTRON_RUN_AS_NODE' || key.startsWith('CODE_SERVER_')) continue;
    if (key === 'PASSWORD' || key === 'HASHED_PASSWORD' || key === 'PORT') continue;
    env[key] = value;
  }
  // code-server writes a default config and state under XDG dirs: keep them in the session.
  env.XDG_CONFIG_HOME = path.join(stateDir, 'xdg-config');
  env.XDG_DATA_HOME = path.join(stateDir, 'xdg-data');
  env.XDG_CACHE_HOME = path.join(stateDir, 'xdg-cache');
  return env;
}

export async function processGroupAlive(pid: number): Promise<boolean> {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startCodeServer(options: CodeServerOptions): Promise<CodeServer> {
  const entry = codeServerEntry();
  await fs.mkdir(options.stateDir, { recursive: true });
  const configFile = path.join(options.stateDir, 'config.yaml');
  await fs.writeFile(configFile, '');
  let lastFailure = '';
  // A free port can be taken between the probe and the bind: retry a few times.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const logFile = path.join(options.stateDir, `code-server-${attempt}.log`);
    const fd = openSync(logFile, 'w');
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [
          entry,
          '--config', configFile,
          '--bind-addr', `127.0.0.1:${port}`,
          '--auth', 'none',
          '--disable-telemetry',
          '--disable-update-check',
          '--disable-workspace-trust',
          '--disable-getting-started-override',
          '--user-data-dir', options.userDataDir,
          '--extensions-dir', options.extensionsDir,
          options.workspace,
        ],
        // detached: its own process group, so stop() reaches every child.
        { detached: true, stdio: ['ignore', fd, fd], env: serverEnv(options.stateDir) },
      );
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error('code-server did not start');
    let exited = false;
    const exitPromise = new Promise<void>((resolve) => {
      child.once('exit', () => {
        exited = true;
        resolve();
      });
    });
    // Last resort if the test process dies without teardown.
    const killOnExit = () => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    process.once('exit', killOnExit);

    const stop = async () => {
      process.removeListener('exit', killOnExit);
      if (!(await processGroupAlive(pid))) return;
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await Promise.race([exitPromise, sleep(5_000)]);
      // Children (extension host, file watcher) can outlive the server: finish them.
      if (await processGroupAlive(pid)) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await waitUntil(`code-server process group ${pid} to exit`, async () =>
        (await processGroupAlive(pid)) ? undefined : true, 10_000);
    };

    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(
        `code-server on ${url}`,
        async () => {
          if (exited) throw new Error('exited');
          const response = await fetch(`${url}/healthz`);
          return response.ok ? true : undefined;
        },
        TIMEOUT.server,
        200,
      );
      return { url, port, pid, logFile, stop };
    } catch (error) {
      await stop();
      lastFailure = `${error instanceof Error ? error.message : String(error)}\n${tail(logFile)}`;
      if (!/EADDRINUSE/.test(lastFailure)) break;
    }
  }
  throw new Error(`code-server did not start:\n${lastFailure}`);
}

// ---------------------------------------------------------------------------
// The extension, installed the way a user gets it

export interface ExtensionManifest {
  publisher: string;
  name: string;
  version: string;
  main: string;
}

export function extensionManifest(): ExtensionManifest {
  const raw: unknown = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
  if (typeof raw !== 'object' || raw === null) throw new Error('package.json is not an object');
  const pick = (key: string): string => {
    const value = (raw as Record<string, unknown>)[key];
    if (typeof value !== 'string') throw new Error(`package.json has no string "${key}"`);
    return value;
  };
  return { publisher: pick('publisher'), name: pick('name'), version: pick('version'), main: pick('main') };
}

/** `layerlens.layer-lens` */
export function extensionId(): string {
  const m = extensionManifest();
  return `${m.publisher}.${m.name}`;
}

/**
 * Copies the built extension (package.json, dist/, media/, README.md and the
 * like) into `<extensionsDir>/<publisher>.<name>-<version>/`, which VS Code
 * picks up at start like an installed .vsix.
 */
export async function installBuiltExtension(extensionsDir: string): Promise<string> {
  const m = extensionManifest();
  const main = path.resolve(REPO_ROOT, m.main.endsWith('.js') ? m.main : `${m.main}.js`);
  if (!existsSync(main)) throw new Error(`${path.relative(REPO_ROOT, main)} is missing: run \`npm run build\` first`);
  const target = path.join(extensionsDir, `${m.publisher}.${m.name}-${m.version}`);
  await fs.rm(target, { recursive: true, force: true });
  await fs.mkdir(target, { recursive: true });
  for (const entry of ['package.json', 'package.nls.json', 'dist', 'media', 'README.md', 'CHANGELOG.md', 'LICENSE']) {
    const from = path.join(REPO_ROOT, entry);
    if (existsSync(from)) await fs.cp(from, path.join(target, entry), { recursive: true });
  }
  return target;
}

/** Installs a packaged .vsix with code-server's own CLI (no network: a local file). */
export async function installVsix(vsix: string, extensionsDir: string, userDataDir: string): Promise<void> {
  const entry = codeServerEntry();
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'layer-lens-vsix-'));
  try {
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [entry, '--extensions-dir', extensionsDir, '--user-data-dir', userDataDir, '--force', '--install-extension', vsix],
        { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnv(stateDir) },
      );
      child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`installing ${vsix} failed (exit ${code}):\n${output.join('')}`);
  } finally {
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}
