// End-to-end harness: a real VS Code (code-server, codeServer.ts) driven by
// playwright-core in Debian's Chromium. Every session gets fresh temp dirs
// (user data, extensions, browser profile), the extension installed as a
// user gets it, and a teardown that kills code-server's whole process group.
// Workbench helpers (commands, quick picks, views, webviews) are in
// workbench.ts, constants and utilities in util.ts.
//
// Waits are conditions with generous timeouts: the workbench is slow on a
// 2-core machine, and a test that sleeps is a test that flakes.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT, RESULTS_DIR, CHROMIUM, TIMEOUT, Theme, THEMES, debug, sleep, tail } from './util';
import { CodeServer, startCodeServer, installBuiltExtension, installVsix } from './codeServer';
import { waitForExtensionHost, waitForWorkbench, screenshot } from './workbench';

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

export const BROWSER_ARGS = [
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
      colorScheme: theme === 'light' ? 'light' : 'dark',
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
