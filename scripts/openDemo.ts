/**
 * `npm run demo:vscode`: the demo workspace in a real VS Code with Layer Lens
 * installed. Makes the demo (scripts/makeDemo.ts), builds the extension if
 * dist/ lacks it, sets up code-server if it is not (scripts/e2e/setup.sh, the
 * same one the end-to-end tests use), and starts it on 127.0.0.1 at a free
 * port with fresh user-data and extensions folders, the extension copied in
 * as an installed one (or a .vsix installed with --vsix), and demo/ open.
 * Prints the URL and runs until Ctrl-C, which stops code-server's whole
 * process group and removes the temporary folders.
 *
 *   node --import tsx scripts/openDemo.ts [--out demo] [--small] [--vsix layer-lens-0.1.0.vsix]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { codeServerEntry, installBuiltExtension, installVsix, startCodeServer } from '../test/e2e/codeServer';
import { ensureBuilt, REPO_ROOT } from './repo';
import { makeDemo } from './makeDemo';

export interface OpenDemoOptions {
  out: string;
  small?: boolean;
  /** Install this .vsix instead of copying the built extension. */
  vsix?: string;
}

function bash(script: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { cwd: REPO_ROOT, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

function codeServerReady(): boolean {
  try {
    codeServerEntry();
    return true;
  } catch {
    return false;
  }
}

/**
 * Settings for a first look: no startup editor of VS Code's own (its Welcome
 * page opens VS Code for the Web's walkthrough), so the first screen is
 * Layer Lens's walkthrough, which the extension opens on its first run in a
 * profile when code-server's environment says LAYER_LENS_WALKTHROUGH=1 (set
 * below); no telemetry, no updates.
 */
const settings = {
  'workbench.startupEditor': 'none',
  'workbench.welcomePage.walkthroughs.openOnInstall': true,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'security.workspace.trust.enabled': false,
  // demo/ sits inside the Layer Lens clone: no offer to open that repository.
  'git.openRepositoryInParentFolders': 'never',
};

export async function openDemo(o: OpenDemoOptions): Promise<void> {
  const log = (s: string) => process.stdout.write(s + '\n');
  const made = await makeDemo({ out: o.out, small: o.small, log: (l) => log(`  ${l}`) });
  log(made.generated ? `Demo workspace written to ${made.paths.root} in ${made.seconds.toFixed(0)} s.` : `Demo workspace: ${made.paths.root}`);
  if (!o.vsix) await ensureBuilt((s) => process.stdout.write(s), path.join(REPO_ROOT, 'dist', 'extension.js'));
  if (!codeServerReady()) {
    log('code-server is not set up: running scripts/e2e/setup.sh (once; it is cached in .cache/e2e/)…');
    const code = await bash(path.join(REPO_ROOT, 'scripts', 'e2e', 'setup.sh'));
    if (code !== 0) throw new Error(`scripts/e2e/setup.sh failed (exit ${code})`);
  }

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layer-lens-demo-'));
  const userDataDir = path.join(root, 'user-data');
  const extensionsDir = path.join(root, 'extensions');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.mkdirSync(extensionsDir, { recursive: true });
  fs.writeFileSync(path.join(userDataDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  const removeRoot = () => fs.rmSync(root, { recursive: true, force: true });
  try {
    if (o.vsix) {
      log(`Installing ${o.vsix}…`);
      await installVsix(path.resolve(o.vsix), extensionsDir, userDataDir);
    } else {
      await installBuiltExtension(extensionsDir);
    }
  } catch (e) {
    removeRoot();
    throw e;
  }

  log('Starting code-server…');
  // The extension opens its walkthrough on its first run in this profile (src/ui/walkthrough.ts).
  process.env['LAYER_LENS_WALKTHROUGH'] = '1';
  let server: Awaited<ReturnType<typeof startCodeServer>>;
  try {
    server = await startCodeServer({ workspace: made.paths.root, userDataDir, extensionsDir, stateDir: path.join(root, 'server') });
  } catch (e) {
    removeRoot();
    throw e;
  }
  const url = `${server.url}/?folder=${encodeURIComponent(made.paths.root)}`;
  log('');
  log(`Layer Lens demo in VS Code: ${url}`);
  log('  Open it in a browser on this machine (from elsewhere: ssh -L <port>:127.0.0.1:<port>).');
  log('  It opens on the "Get started with Layer Lens" walkthrough (again later: F1 > "Welcome: Open Walkthrough...").');
  log('  The Models view is at the bottom of the Explorer.');
  log(`  code-server log: ${server.logFile}`);
  log('Press Ctrl-C to stop.');

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(watch);
      log(`\n${why}: stopping code-server…`);
      await server.stop().catch((e: unknown) => log(`could not stop code-server cleanly: ${e instanceof Error ? e.message : String(e)}`));
      removeRoot();
      log('Stopped.');
      resolve();
    };
    // code-server can also die on its own (a crash, a kill): then say so and end.
    const watch = setInterval(() => {
      try {
        process.kill(server.pid, 0);
      } catch {
        process.exitCode = 1;
        void stop('code-server exited');
      }
    }, 2000);
    process.once('SIGINT', () => void stop('Ctrl-C'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(REPO_ROOT, 'demo') },
      small: { type: 'boolean', default: false },
      vsix: { type: 'string' },
    },
  });
  await openDemo({ out: values.out, small: values.small, vsix: values.vsix });
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`demo:vscode: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
