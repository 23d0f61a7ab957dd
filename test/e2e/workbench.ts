// Driving the workbench as a user does: commands, quick picks, views, the
// output channel, notifications, webviews, screenshots.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Frame, type Locator, type Page } from 'playwright-core';
import { RESULTS_DIR, TIMEOUT, debug, waitUntil, exactText } from './util';
import { extensionId } from './codeServer';

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

export function quickInput(page: Page): Locator {
  return page.locator('.quick-input-widget');
}

export function quickInputBox(page: Page): Locator {
  return page.locator('.quick-input-widget .quick-input-box input');
}

export function quickInputRows(page: Page): Locator {
  return page.locator('.quick-input-widget .quick-input-list .monaco-list-row');
}

/** The visible rows' labels of the open quick input (the list is virtualised: only visible rows). */
export async function quickInputLabels(page: Page): Promise<string[]> {
  return quickInputRows(page).evaluateAll((rows: PageElement[]) =>
    rows.map((row) => (row.querySelector('.label-name')?.textContent ?? '').trim()),
  );
}

/** Opens the quick input (F1) and waits for it to take keyboard input. */
export async function openQuickInput(page: Page, timeout: number): Promise<void> {
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
export async function chooseQuickInputItem(page: Page, filter: string, label: string, timeout: number): Promise<void> {
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

export async function chooseQuickPickOrThrow(page: Page, filter: string, label: string, timeout: number, what: string): Promise<void> {
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

/**
 * Answers VS Code's own folder dialog (code-server's simple dialog, a quick
 * input) with `dir`. The dialog rewrites its value as it lists folders and
 * ignores Enter while busy, so Enter is pressed only when the value is `dir`
 * and the dialog is idle, again until it closes (the first Enter may only
 * open the folder).
 */
export async function answerFolderDialog(page: Page, dir: string, options: UiOptions = {}): Promise<void> {
  const timeout = options.timeout ?? TIMEOUT.ui;
  const deadline = Date.now() + timeout;
  await quickInputBox(page).waitFor({ state: 'visible', timeout });
  const busy = page.locator('.quick-input-widget .monaco-progress-container.active');
  const same = (v: string) => v.replace(/[\\/]+$/, '') === dir.replace(/[\\/]+$/, '');
  await quickInputBox(page).fill(dir);
  while (await quickInput(page).isVisible()) {
    if (Date.now() > deadline) {
      const value = await quickInputBox(page).inputValue().catch(() => '?');
      throw new Error(`the folder dialog did not accept ${dir} (its value: ${value})`);
    }
    const value = await quickInputBox(page).inputValue().catch(() => undefined);
    if (value === undefined) break;
    if (!same(value)) {
      await quickInputBox(page).fill(dir);
      await page.waitForTimeout(300);
      continue;
    }
    if ((await busy.count()) > 0 && (await busy.first().isVisible())) {
      await page.waitForTimeout(200);
      continue;
    }
    // Give the dialog a moment to apply the value (it lists the folder asynchronously), then check again.
    await page.waitForTimeout(500);
    if (!same((await quickInputBox(page).inputValue().catch(() => '')) ?? '')) continue;
    await quickInputBox(page).press('Enter');
    await quickInput(page).waitFor({ state: 'hidden', timeout: 3_000 }).catch(() => undefined);
  }
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
export async function outputChannelShown(page: Page, name: string, timeout: number): Promise<void> {
  await page.waitForFunction(
    (channel) =>
      [...document.querySelectorAll('.part.panel select.monaco-select-box')].some(
        (select) => select.checkVisibility() && select.value === channel,
      ),
    name,
    { timeout },
  );
}

export function outputEditor(page: Page): Locator {
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

export async function blurAndRefocus(page: Page): Promise<void> {
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

export async function savedEditorStateContains(page: Page, wanted: readonly string[]): Promise<boolean> {
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
