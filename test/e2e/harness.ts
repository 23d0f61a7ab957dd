// End-to-end harness: a real VS Code (code-server, installed by
// scripts/e2e/setup.sh into .cache/e2e/) driven by playwright-core in
// Debian's Chromium. Every session gets fresh temp dirs (user data,
// extensions, browser profile), the extension installed as a user gets it,
// and a teardown that kills code-server's whole process group.
//
// Waits are conditions with generous timeouts: the workbench is slow on a
// 2-core machine, and a test that sleeps is a test that flakes.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Frame, type Locator, type Page } from 'playwright-core';

// Browser globals, for the callbacks of page.evaluate() and friends (they run
// in the page). Declared module-scoped: the project's lib has no DOM, and
// these must not leak into the Node code.
interface PageElement {
  readonly value?: string;
  readonly textContent: string | null;
  readonly classList: { contains(token: string): boolean };
  checkVisibility(): boolean;
  contains(other: PageElement | null): boolean;
  querySelector(selector: string): PageElement | null;
}
declare const document: {
  readonly activeElement: PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};
declare const navigator: { clipboard: { readText(): Promise<string>; writeText(text: string): Promise<void> } };

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CODE_SERVER_VERSION = '4.100.3';
/** Screenshots, and logs of failed sessions (git-ignored). */
export const RESULTS_DIR = path.join(REPO_ROOT, 'test-results', 'e2e');
const CACHE_DIR = process.env.LAYER_LENS_E2E_CACHE ?? path.join(REPO_ROOT, '.cache', 'e2e');
const CODE_SERVER_DIR = path.join(CACHE_DIR, `code-server-${CODE_SERVER_VERSION}`);
const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium';

/** Timeouts in ms. Generous: CI machines have 2 cores. */
export const TIMEOUT = {
  server: 60_000,
  workbench: 90_000,
  ui: 30_000,
} as const;

export type Theme = 'light' | 'dark';
const THEMES: Record<Theme, string> = { light: 'Default Light Modern', dark: 'Default Dark Modern' };

// ---------------------------------------------------------------------------
// Small utilities

const started = Date.now();
/** Progress lines on stderr with E2E_DEBUG=1 (to see where the time goes). */
export function debug(message: string): void {
  if (process.env.E2E_DEBUG) process.stderr.write(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function exactText(text: string): RegExp {
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

function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

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
function serverEnv(stateDir: string): NodeJS.ProcessEnv {
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

async function processGroupAlive(pid: number): Promise<boolean> {
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

interface ExtensionManifest {
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

// ---------------------------------------------------------------------------
// Session: code-server + Chromium on the workbench

export interface SessionOptions {
  /** Folder to open (made by the test). */
  workspace: string;
  theme?: Theme;
  /** Extra user settings, merged over the harness defaults. */
  settings?: Record<string, unknown>;
  /** 'folder' (default): copy the built extension; a path ending in .vsix: install it; 'none'. */
  extension?: 'folder' | 'none' | string;
  viewport?: { width: number; height: number };
}

export interface Session {
  readonly page: Page;
  readonly context: BrowserContext;
  readonly server: CodeServer;
  readonly workspace: string;
  readonly userDataDir: string;
  readonly extensionsDir: string;
  /** Browser console errors and uncaught page errors seen so far. */
  readonly pageErrors: string[];
  screenshot(name: string): Promise<string>;
  /** Copies the server log and VS Code's logs to test-results/e2e/<name>/. */
  saveLogs(name: string): Promise<string>;
  close(): Promise<void>;
}

export function userSettings(theme: Theme, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    'workbench.colorTheme': THEMES[theme],
    'workbench.startupEditor': 'none',
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'workbench.reduceMotion': 'on',
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'git.enabled': false,
    'git.openRepositoryInParentFolders': 'never',
    'terminal.integrated.enablePersistentSessions': false,
    'terminal.integrated.gpuAcceleration': 'off',
    ...extra,
  };
}

const BROWSER_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export async function startSession(options: SessionOptions): Promise<Session> {
  const theme = options.theme ?? 'light';
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'layer-lens-e2e-'));
  const userDataDir = path.join(root, 'user-data');
  const extensionsDir = path.join(root, 'extensions');
  const profileDir = path.join(root, 'chromium-profile');
  await fs.mkdir(path.join(userDataDir, 'User'), { recursive: true });
  await fs.mkdir(extensionsDir, { recursive: true });
  await fs.writeFile(
    path.join(userDataDir, 'User', 'settings.json'),
    JSON.stringify(userSettings(theme, options.settings), null, 2),
  );

  let server: CodeServer | undefined;
  let context: BrowserContext | undefined;
  const cleanup = async () => {
    debug('closing the session');
    const errors: unknown[] = [];
    if (context) {
      const ctx = context;
      context = undefined;
      await Promise.race([ctx.close(), sleep(15_000)]).catch((e: unknown) => errors.push(e));
    }
    if (server) {
      const srv = server;
      server = undefined;
      await srv.stop().catch((e: unknown) => errors.push(e));
    }
    if (!process.env.E2E_KEEP) await fs.rm(root, { recursive: true, force: true }).catch((e: unknown) => errors.push(e));
    debug('session closed');
    if (errors.length > 0) throw new AggregateError(errors, 'e2e session teardown failed');
  };

  let page: Page | undefined;
  try {
    const extension = options.extension ?? 'folder';
    if (extension === 'folder') await installBuiltExtension(extensionsDir);
    else if (extension !== 'none') await installVsix(extension, extensionsDir, userDataDir);

    debug('starting code-server');
    server = await startCodeServer({ workspace: options.workspace, userDataDir, extensionsDir, stateDir: path.join(root, 'server') });
    debug(`code-server on ${server.url}; launching Chromium`);
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: BROWSER_ARGS,
      viewport: options.viewport ?? { width: 1400, height: 900 },
      colorScheme: theme,
      // readOutputChannel() copies the output editor's text through the clipboard.
      permissions: ['clipboard-read', 'clipboard-write'],
      timeout: TIMEOUT.server,
    });
    context.setDefaultTimeout(TIMEOUT.ui);
    page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(`${server.url}/?folder=${encodeURIComponent(options.workspace)}`, { timeout: TIMEOUT.workbench });
    debug('loading the workbench');
    await waitForWorkbench(page);
    debug('workbench shown; waiting for the extension host');
    await waitForExtensionHost(userDataDir);
    debug('session ready');

    const srv = server;
    const ctx = context;
    const shownPage = page;
    return {
      page: shownPage,
      context: ctx,
      server: srv,
      workspace: options.workspace,
      userDataDir,
      extensionsDir,
      pageErrors,
      screenshot: (name) => screenshot(shownPage, name),
      saveLogs: async (name) => {
        const dir = path.join(RESULTS_DIR, name);
        await fs.mkdir(dir, { recursive: true });
        await fs.cp(srv.logFile, path.join(dir, 'code-server.log')).catch(() => undefined);
        await fs.cp(path.join(userDataDir, 'logs'), path.join(dir, 'vscode-logs'), { recursive: true }).catch(() => undefined);
        await fs.writeFile(path.join(dir, 'page-errors.txt'), pageErrors.join('\n'));
        return dir;
      },
      close: cleanup,
    };
  } catch (error) {
    // The session never started: keep what shows why.
    const log = server ? `\ncode-server log:\n${tail(server.logFile)}` : '';
    if (page) await screenshot(page, 'session-start-failure').catch(() => undefined);
    if (server) {
      const dir = path.join(RESULTS_DIR, 'session-start-failure');
      await fs.mkdir(dir, { recursive: true }).catch(() => undefined);
      await fs.cp(server.logFile, path.join(dir, 'code-server.log')).catch(() => undefined);
      await fs.cp(path.join(userDataDir, 'logs'), path.join(dir, 'vscode-logs'), { recursive: true }).catch(() => undefined);
    }
    await cleanup().catch(() => undefined);
    if (error instanceof Error) error.message += log;
    throw error;
  }
}

/**
 * Runs `body` in a fresh session and always tears it down. On failure, saves a
 * screenshot and the logs under test-results/e2e/<name>/ before rethrowing.
 */
export async function withSession<T>(name: string, options: SessionOptions, body: (session: Session) => Promise<T>): Promise<T> {
  const session = await startSession(options);
  try {
    return await body(session);
  } catch (error) {
    await session.screenshot(`${name}-failure`).catch(() => undefined);
    const dir = await session.saveLogs(name).catch(() => undefined);
    if (error instanceof Error && dir) error.message += `\n(screenshot and logs in ${path.relative(REPO_ROOT, dir)})`;
    throw error;
  } finally {
    await session.close();
  }
}

// ---------------------------------------------------------------------------
// Workbench helpers

/**
 * Waits until the server's extension host has started and activated the
 * startup extensions (its log says "Eager extensions activated"). Until then
 * the palette lacks the commands of extensions (for ~5 s here).
 */
export async function waitForExtensionHost(userDataDir: string, timeout: number = TIMEOUT.workbench): Promise<void> {
  const logs = path.join(userDataDir, 'logs');
  await waitUntil(
    'the extension host to activate the startup extensions',
    async () => {
      for (const session of await fs.readdir(logs).catch(() => [] as string[])) {
        for (const host of await fs.readdir(path.join(logs, session)).catch(() => [] as string[])) {
          if (!host.startsWith('exthost')) continue;
          const log = await fs.readFile(path.join(logs, session, host, 'remoteexthost.log'), 'utf8').catch(() => '');
          if (log.includes('Eager extensions activated')) return true;
        }
      }
      return undefined;
    },
    timeout,
    250,
  );
}

/** Waits until the workbench is laid out and connected to code-server. */
export async function waitForWorkbench(page: Page): Promise<void> {
  await page.locator('.monaco-workbench .part.statusbar').waitFor({ state: 'visible', timeout: TIMEOUT.workbench });
  await page.locator('.monaco-workbench .part.activitybar').waitFor({ state: 'visible', timeout: TIMEOUT.workbench });
  // The remote indicator says "Disconnected"/"Reconnecting" until the server connection is up.
  await waitUntil(
    'the workbench to connect to code-server',
    async () => {
      const label = (await page.locator('#status\\.host').getAttribute('aria-label').catch(() => null)) ?? '';
      return /disconnect|reconnect|opening/i.test(label) ? undefined : true;
    },
    TIMEOUT.workbench,
  );
}

/** Whether the keyboard focus is in (or on) the element. */
export async function hasFocus(locator: Locator): Promise<boolean> {
  return locator.evaluate((el: PageElement) => el.contains(document.activeElement));
}

/** Waits until the keyboard focus is in (or on) the element. */
export async function waitForFocus(locator: Locator, options: UiOptions = {}): Promise<void> {
  await waitUntil('the keyboard focus', async () => ((await hasFocus(locator)) ? true : undefined), options.timeout ?? TIMEOUT.ui);
}

function quickInput(page: Page): Locator {
  return page.locator('.quick-input-widget');
}

function quickInputBox(page: Page): Locator {
  return page.locator('.quick-input-widget .quick-input-box input');
}

function quickInputRows(page: Page): Locator {
  return page.locator('.quick-input-widget .quick-input-list .monaco-list-row');
}

/** The visible rows' labels of the open quick input (the list is virtualised: only visible rows). */
export async function quickInputLabels(page: Page): Promise<string[]> {
  return quickInputRows(page).evaluateAll((rows: PageElement[]) =>
    rows.map((row) => (row.querySelector('.label-name')?.textContent ?? '').trim()),
  );
}

/** Opens the quick input (F1) and waits for it to take keyboard input. */
async function openQuickInput(page: Page, timeout: number): Promise<void> {
  await waitUntil(
    'the quick input to open (F1)',
    async () => {
      if (await quickInputBox(page).isVisible()) {
        if (await hasFocus(quickInputBox(page))) return true;
      }
      // Focus may be in a webview or nowhere: F1 is forwarded by webviews too.
      await page.keyboard.press('F1');
      await quickInputBox(page).waitFor({ state: 'visible', timeout: 3_000 });
      return (await hasFocus(quickInputBox(page))) ? true : undefined;
    },
    timeout,
    200,
  );
}

/**
 * Types `filter` into the open quick input and accepts the item whose label
 * is exactly `label` (Enter when it is the focused row, else a click).
 * Items of a new quick pick can arrive after it shows, and typing before
 * then leaves an empty list, so the filter is typed again until the item shows.
 */
async function chooseQuickInputItem(page: Page, filter: string, label: string, timeout: number): Promise<void> {
  const row = quickInputRows(page)
    .filter({ has: page.locator('.label-name', { hasText: exactText(label) }) })
    .first();
  const deadline = Date.now() + timeout;
  for (;;) {
    await quickInputBox(page).fill(filter);
    try {
      await row.waitFor({ state: 'visible', timeout: Math.max(1, Math.min(5_000, deadline - Date.now())) });
      break;
    } catch {
      if (Date.now() >= deadline) {
        const seen = await quickInputLabels(page).catch(() => []);
        throw new Error(`no quick input item "${label}" for "${filter}" (items: ${JSON.stringify(seen)})`);
      }
      await quickInputBox(page).fill('');
    }
  }
  const focused = await row.evaluate((el: PageElement) => el.classList.contains('focused'));
  if (focused) await quickInputBox(page).press('Enter');
  else await row.click();
  // Done when this quick input closed, or was replaced by another (its value changes).
  await page.waitForFunction(
    (text) => {
      const widget = document.querySelector('.quick-input-widget');
      const box = widget?.querySelector('.quick-input-box input');
      return !widget || !box || !widget.checkVisibility() || box.value !== text;
    },
    filter,
    { timeout },
  );
}

export interface UiOptions {
  timeout?: number;
}

/** Runs a command by its palette title ("Category: Title"): F1, type, Enter. */
export async function runCommand(page: Page, title: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  debug(`command: ${title}`);
  await openQuickInput(page, timeout);
  await chooseQuickPickOrThrow(page, `>${title}`, title, timeout, `command "${title}"`);
}

async function chooseQuickPickOrThrow(page: Page, filter: string, label: string, timeout: number, what: string): Promise<void> {
  try {
    await chooseQuickInputItem(page, filter, label, timeout);
  } catch (error) {
    await page.keyboard.press('Escape').catch(() => undefined);
    throw new Error(`${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Picks an item in a quick pick that is already open (one a command opened):
 * waits until it has items, then filters and accepts the exact `label`.
 */
export async function pickQuickItem(page: Page, label: string, options: UiOptions & { filter?: string } = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await waitUntil(
    'a quick pick with items',
    async () => {
      if (!(await quickInput(page).isVisible())) return undefined;
      const value = await quickInputBox(page).inputValue();
      if (value.startsWith('>')) return undefined; // still the command palette
      return (await quickInputRows(page).count()) > 0 ? true : undefined;
    },
    timeout,
  );
  await chooseQuickPickOrThrow(page, options.filter ?? label, label, timeout, `quick pick item "${label}"`);
}

/** Answers an input box (showInputBox) that is open: types `text` and presses Enter. */
export async function answerInputBox(page: Page, text: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await quickInputBox(page).waitFor({ state: 'visible', timeout });
  await quickInputBox(page).fill(text);
  await quickInputBox(page).press('Enter');
}

/**
 * Lists the command palette's titles for `filter` (the visible rows: the list
 * is virtualised, about 20 rows fit), then closes the palette. Empty when
 * nothing matches.
 */
export async function listCommands(page: Page, filter: string, options: UiOptions = {}): Promise<string[]> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await openQuickInput(page, timeout);
  await quickInputBox(page).fill(`>${filter}`);
  // The list shows at least one row once filtered ("No matching commands" when
  // empty); take it when two reads in a row agree.
  let previous = '';
  const labels = await waitUntil(
    `the command palette to list commands for "${filter}"`,
    async () => {
      const current = await quickInputLabels(page);
      const key = JSON.stringify(current);
      const stable = current.length > 0 && key === previous;
      previous = key;
      return stable ? current : undefined;
    },
    timeout,
    250,
  );
  await page.keyboard.press('Escape');
  await quickInput(page).waitFor({ state: 'hidden', timeout });
  return labels.filter((label) => label !== 'No matching commands');
}

/** Opens a file of the workspace by its relative path through Quick Open. */
export async function openFile(page: Page, relativePath: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await openQuickInput(page, timeout);
  await chooseQuickPickOrThrow(page, relativePath, path.basename(relativePath), timeout, `file "${relativePath}"`);
  await page
    .locator('.editor-group-container .tab.active', { hasText: path.basename(relativePath) })
    .first()
    .waitFor({ state: 'visible', timeout });
}

/** A view pane (a section of a side bar container or panel) by its title, e.g. "Models". */
export function viewPane(page: Page, name: string): Locator {
  return page.locator('.pane', { has: page.locator('.pane-header .title', { hasText: exactText(name) }) }).first();
}

/**
 * Opens a view by name with the "view " quick access (View: Open View…):
 * works for side bar views (Explorer, Models, Outline) and panels (Output, Terminal).
 */
export async function openView(page: Page, name: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await openQuickInput(page, timeout);
  await chooseQuickPickOrThrow(page, `view ${name}`, name, timeout, `view "${name}"`);
}

/** The Output panel's channel dropdown (a <select>) shows `name`. */
async function outputChannelShown(page: Page, name: string, timeout: number): Promise<void> {
  await page.waitForFunction(
    (channel) =>
      [...document.querySelectorAll('.part.panel select.monaco-select-box')].some(
        (select) => select.checkVisibility() && select.value === channel,
      ),
    name,
    { timeout },
  );
}

function outputEditor(page: Page): Locator {
  return page.locator('.part.panel .output-view .monaco-editor, .part.panel .pane-body.output-view .monaco-editor').first();
}

/**
 * Shows the output channel `name` (Output: Show Output Channels…) and returns
 * its full text. The Output view is a Monaco editor that renders only the
 * visible lines (`.view-lines`), wrapped; so the text is copied instead:
 * focus, select all, copy, read the clipboard (the context grants it).
 */
export async function readOutputChannel(page: Page, name: string, options: UiOptions = {}): Promise<string> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await showOutputChannel(page, name, { timeout });
  return copyEditorText(page, outputEditor(page), timeout);
}

/** Shows the output channel `name` in the Output panel. */
export async function showOutputChannel(page: Page, name: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  await runCommand(page, 'Output: Show Output Channels...', { timeout });
  await pickQuickItem(page, name, { timeout });
  await outputChannelShown(page, name, timeout);
  await outputEditor(page).waitFor({ state: 'visible', timeout });
}

/** The lines the Output panel shows right now (only what is scrolled into view, soft-wrapped). */
export async function visibleOutputText(page: Page): Promise<string> {
  return outputEditor(page).locator('.view-lines').innerText();
}

/** Copies the whole text of a Monaco editor through the clipboard. */
export async function copyEditorText(page: Page, editor: Locator, timeout: number = TIMEOUT.ui): Promise<string> {
  const sentinel = `layer-lens-e2e-sentinel-${Date.now()}-${Math.random()}`;
  await page.evaluate((text) => navigator.clipboard.writeText(text), sentinel);
  await editor.locator('textarea').first().focus();
  await waitForFocus(editor, { timeout });
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('ControlOrMeta+C');
  const text = await waitUntil(
    'the copied editor text on the clipboard',
    async () => {
      const clip = await page.evaluate(() => navigator.clipboard.readText());
      return clip === sentinel ? undefined : clip;
    },
    timeout,
  );
  await page.keyboard.press('Escape');
  // An empty editor copies its one empty line.
  return text === '\n' ? '' : text;
}

/** Texts of the notification toasts on screen. */
export async function notificationToasts(page: Page): Promise<string[]> {
  return page.locator('.notifications-toasts .notification-list-item-message').allInnerTexts();
}

/** Waits for a notification toast whose message matches. */
export async function waitForNotification(page: Page, message: string | RegExp, options: UiOptions = {}): Promise<Locator> {
  const toast = page.locator('.notifications-toasts .notification-list-item', {
    has: page.locator('.notification-list-item-message', { hasText: message }),
  }).first();
  await toast.waitFor({ state: 'visible', timeout: options.timeout ?? TIMEOUT.ui });
  return toast;
}

export async function clearNotifications(page: Page): Promise<void> {
  await runCommand(page, 'Notifications: Clear All Notifications');
}

/**
 * The content frame of a webview (panel or view). VS Code renders a webview as
 * an outer iframe (…/webview/browser/pre/index.html?…&extensionId=…) holding
 * the content in an inner `active-frame` (…/pre/fake.html). Waits for an inner
 * frame whose outer frame belongs to `extensionId` (default: this extension)
 * and, if given, whose document has `selector`.
 */
export async function webviewFrame(
  page: Page,
  options: UiOptions & { extensionId?: string; selector?: string } = {},
): Promise<Frame> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  const wantedExtension = (options.extensionId ?? extensionId()).toLowerCase();
  return waitUntil(
    `a webview of ${wantedExtension}${options.selector ? ` showing ${options.selector}` : ''}`,
    async () => {
      for (const frame of page.frames()) {
        const outer = frame.parentFrame();
        if (!outer || !outer.url().includes('/webview/browser/pre/index.html')) continue;
        if (!frame.url().includes('/pre/fake.html')) continue;
        const owner = new URL(outer.url()).searchParams.get('extensionId')?.toLowerCase();
        if (owner !== wantedExtension) continue;
        if (options.selector && (await frame.locator(options.selector).count()) === 0) continue;
        return frame;
      }
      return undefined;
    },
    timeout,
    200,
  );
}

/**
 * Makes the workbench save its state now (open editors, webview states) and
 * waits until IndexedDB holds an editor state that contains every one of
 * `expected` (compared with JSON's backslash escapes removed, so a webview's
 * `"selected":"conv1"` matches inside the doubly encoded memento).
 * VS Code for the Web saves when the window loses focus, every minute, and on
 * unload, where the IndexedDB write may not finish before the page goes: a
 * page.reload() soon after a change can restore an older state. This does
 * what switching to another window does (document.hasFocus() false, a blur
 * event), then gives the focus back, and does it again on every poll: a save
 * can land with a webview state from just before its last setState.
 */
export async function saveWorkbenchState(page: Page, expected: string | readonly string[], options: UiOptions = {}): Promise<void> {
  const wanted = typeof expected === 'string' ? [expected] : [...expected];
  await waitUntil(
    `the saved editor state to contain ${wanted.map((e) => JSON.stringify(e)).join(' and ')}`,
    async () => {
      await blurAndRefocus(page);
      return (await savedEditorStateContains(page, wanted)) ? true : undefined;
    },
    options.timeout ?? TIMEOUT.ui,
    500,
  );
}

async function blurAndRefocus(page: Page): Promise<void> {
  await page.evaluate(
    () =>
      new Promise<void>((resolve) => {
        const w = globalThis as unknown as {
          document: { hasFocus(): boolean };
          dispatchEvent(event: unknown): void;
          FocusEvent: new (type: string) => unknown;
        };
        const doc = w.document as { hasFocus(): boolean };
        w.dispatchEvent(new w.FocusEvent('focus'));
        doc.hasFocus = () => false;
        w.dispatchEvent(new w.FocusEvent('blur'));
        // VS Code's focus tracker reports a blur on the next task.
        setTimeout(() => {
          delete (doc as { hasFocus?: unknown }).hasFocus;
          w.dispatchEvent(new w.FocusEvent('focus'));
          resolve();
        }, 50);
      }),
  );
}

async function savedEditorStateContains(page: Page, wanted: readonly string[]): Promise<boolean> {
  return page.evaluate(async (keys) => {
    type Request<T> = { result: T; onsuccess: (() => void) | null; onerror: (() => void) | null };
    const idb = (globalThis as unknown as {
      indexedDB: {
        databases(): Promise<{ name?: string }[]>;
        open(name: string): Request<{ transaction(store: string): { objectStore(store: string): { get(key: string): Request<unknown> } }; close(): void }>;
      };
    }).indexedDB;
    // No named inner functions: tsx's __name() helper does not exist in the page.
    for (const { name } of await idb.databases()) {
      if (!name?.startsWith('vscode-web-state-db-') || name.endsWith('-global')) continue;
      const opening = idb.open(name);
      const db = await new Promise<typeof opening.result | undefined>((resolve) => {
        opening.onsuccess = () => resolve(opening.result);
        opening.onerror = () => resolve(undefined);
      });
      if (!db) continue;
      try {
        const reading = db.transaction('ItemTable').objectStore('ItemTable').get('memento/workbench.parts.editor');
        const value = await new Promise<unknown>((resolve) => {
          reading.onsuccess = () => resolve(reading.result);
          reading.onerror = () => resolve(undefined);
        });
        if (typeof value === 'string') {
          const plain = value.replace(/\\/g, '');
          if (keys.every((k) => plain.includes(k))) return true;
        }
      } catch {
        // not a state database of this shape
      } finally {
        db.close();
      }
    }
    return false;
  }, wanted);
}

/** Saves a full-page screenshot to test-results/e2e/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await fs.mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name.replace(/[^\w.-]+/g, '_')}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Makes a temp folder to open as the workspace, with `files` (relative path -> content). */
export async function makeWorkspace(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'layer-lens-ws-'));
  for (const [relative, content] of Object.entries(files)) {
    const file = path.join(dir, relative);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content);
  }
  return dir;
}
