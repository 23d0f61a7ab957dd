// Proves the harness in a real VS Code: code-server starts, the workbench
// loads, the extension is installed, and each helper works against built-in
// features (command palette, terminal with a pty, Quick Open with ripgrep,
// the Output panel, a webview, themes).
// Needs `bash scripts/e2e/setup.sh` and `npm run build` first.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { withSession, type Session } from './harness';
import { REPO_ROOT } from './util';
import { listCommands, makeWorkspace, openFile, openView, readOutputChannel, runCommand, viewPane, waitForFocus, webviewFrame } from './workbench';

const workspaces: string[] = [];
after(async () => {
  await Promise.all(workspaces.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function workspace(files: Record<string, string>): Promise<string> {
  const dir = await makeWorkspace(files);
  workspaces.push(dir);
  return dir;
}

/** "Category: Title" of the commands package.json shows in the command palette. */
function paletteTitles(): string[] {
  const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    contributes?: {
      commands?: { command: string; title: string; category?: string }[];
      menus?: { commandPalette?: { command: string; when?: string }[] };
    };
  };
  const hidden = new Set(
    (manifest.contributes?.menus?.commandPalette ?? []).filter((m) => m.when === 'false').map((m) => m.command),
  );
  return (manifest.contributes?.commands ?? [])
    .filter((c) => !hidden.has(c.command))
    .map((c) => (c.category ? `${c.category}: ${c.title}` : c.title));
}

/** The remote extension host's own log file, as written on the server. */
async function remoteExtensionHostLog(session: Session): Promise<string> {
  const logs = path.join(session.userDataDir, 'logs');
  const [latest] = (await readdir(logs)).sort().reverse();
  assert.ok(latest, 'no VS Code log folder');
  return readFile(path.join(logs, latest, 'exthost1', 'remoteexthost.log'), 'utf8');
}

test('the workbench loads with the extension installed, and the helpers work', { timeout: 240_000 }, async () => {
  const ws = await workspace({
    'README.md': '# Hello Preview\n\nA workspace made by the e2e smoke test.\n',
    'notes/todo.txt': 'nothing to do\n',
  });
  await withSession('smoke', { workspace: ws, theme: 'light' }, async (session) => {
    const { page } = session;

    // The workbench shows the folder, in the light theme, without a welcome page or trust dialog.
    await viewPane(page, path.basename(ws).toUpperCase())
      .or(page.locator('.explorer-folders-view'))
      .first()
      .waitFor({ state: 'visible' });
    await page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'README.md' }).waitFor({ state: 'visible' });
    assert.equal(await page.locator('.monaco-workbench.vs').count(), 1, 'light theme (class "vs")');
    assert.equal(await page.locator('.editor-group-container .tab').count(), 0, 'no editor open at start');
    assert.equal(await page.locator('.monaco-dialog-box').count(), 0, 'no dialog (workspace trust)');

    // The extension is installed: the palette lists its commands, with the titles of package.json.
    const contributed = paletteTitles();
    assert.ok(contributed.length > 0, 'package.json contributes commands');
    const listed = (await listCommands(page, 'Layer Lens:')).filter((t) => t.startsWith('Layer Lens:'));
    assert.ok(listed.length > 0, 'the palette lists Layer Lens commands');
    for (const title of listed) assert.ok(contributed.includes(title), `${title} is contributed by package.json`);
    const first = contributed[0] ?? '';
    assert.deepEqual((await listCommands(page, first)).filter((t) => t === first), [first]);

    // A command that does not exist fails fast and leaves the palette closed.
    await assert.rejects(runCommand(page, 'No Such Command 4711', { timeout: 3_000 }), /No Such Command 4711/);
    await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });

    // runCommand with a built-in: the terminal opens, and runs a shell through node-pty.
    await runCommand(page, 'View: Toggle Terminal');
    const terminal = page.locator('.part.panel .terminal-wrapper.active .xterm').first();
    await terminal.waitFor({ state: 'visible' });
    await waitForFocus(terminal);
    await page.keyboard.type('echo e2e-$((6*7))');
    await page.keyboard.press('Enter');
    await page.locator('.part.panel .xterm-rows', { hasText: 'e2e-42' }).first().waitFor({ state: 'visible' });

    // Quick Open (ripgrep lists the files), and a webview: the Markdown preview.
    await openFile(page, 'README.md');
    await runCommand(page, 'Markdown: Open Preview');
    const preview = await webviewFrame(page, { extensionId: 'vscode.markdown-language-features', selector: 'h1' });
    assert.equal((await preview.locator('h1').innerText()).trim(), 'Hello Preview');

    // openView: a collapsed Explorer section expands.
    await openView(page, 'Outline');
    await viewPane(page, 'Outline').locator('.pane-header.expanded').waitFor({ state: 'visible' });

    // readOutputChannel returns the whole text, not only the lines in view:
    // it holds the first line of the remote extension host's log file.
    const onDisk = await remoteExtensionHostLog(session);
    const firstLine = onDisk.split('\n')[0] ?? '';
    assert.match(firstLine, /Extension host with pid \d+ started/);
    const shown = await readOutputChannel(page, 'Extension Host (Remote)');
    assert.ok(shown.includes(firstLine), `output channel text lacks ${JSON.stringify(firstLine)}:\n${shown}`);

    const file = await session.screenshot('smoke-light');
    assert.ok((await stat(file)).size > 10_000, 'screenshot written');
  });
});

test('the dark theme applies', { timeout: 180_000 }, async () => {
  const ws = await workspace({ 'README.md': '# Dark\n' });
  await withSession('smoke-dark', { workspace: ws, theme: 'dark', extension: 'none' }, async (session) => {
    await session.page.locator('.monaco-workbench.vs-dark').waitFor({ state: 'visible' });
    await session.screenshot('smoke-dark');
  });
});
