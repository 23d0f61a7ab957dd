/**
 * The pickers commands and panels share: an input image (a quick pick of the
 * workspace's PNG/JPEG files, nearest to the model first, with "Browse…" for
 * a file dialog), a folder of images, a dataset folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

const browse = '$(folder-opened) Browse…';

type Item = vscode.QuickPickItem & { uri?: vscode.Uri };

const imageGlob = '**/*.{png,PNG,jpg,JPG,jpeg,JPEG}';
const notSearched = '{**/node_modules/**,**/.git/**}';

/**
 * A quick pick that shows at once, busy, with `first` items (Browse…), while
 * `load` searches the workspace (a large workspace on a busy machine takes
 * seconds: the user sees the picker and can browse meanwhile); closing it
 * cancels the search. Resolves with the accepted item, or undefined.
 */
function pickWhileLoading(o: {
  title: string;
  busyPlaceholder: string;
  first: Item[];
  load: (token: vscode.CancellationToken) => Promise<{ items: Item[]; placeholder: string }>;
}): Promise<Item | undefined> {
  const qp = vscode.window.createQuickPick<Item>();
  const cancel = new vscode.CancellationTokenSource();
  qp.title = o.title;
  qp.placeholder = o.busyPlaceholder;
  qp.matchOnDescription = true;
  qp.items = o.first;
  qp.busy = true;
  return new Promise<Item | undefined>((resolve) => {
    let done = false;
    const finish = (item: Item | undefined) => {
      if (done) return;
      done = true;
      cancel.cancel();
      resolve(item);
      qp.dispose();
      cancel.dispose();
    };
    qp.onDidAccept(() => finish(qp.selectedItems[0] ?? qp.activeItems[0]));
    qp.onDidHide(() => finish(undefined));
    qp.show();
    o.load(cancel.token).then(
      ({ items, placeholder }) => {
        if (done) return;
        const filter = qp.value;
        qp.items = items;
        qp.placeholder = placeholder;
        qp.busy = false;
        // Keep what the user typed meanwhile.
        qp.value = filter;
      },
      () => {
        if (done) return;
        qp.busy = false;
        qp.placeholder = 'The workspace could not be searched: browse for one';
      },
    );
  });
}

/** An input image. */
export async function pickImage(near?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const base = near ? path.dirname(near.fsPath) : undefined;
  const distance = (u: vscode.Uri) => (base ? path.relative(base, u.fsPath).split(path.sep).length : 0);
  const browseItem: Item = { label: browse, alwaysShow: true };
  const picked = await pickWhileLoading({
    title: 'Layer Lens: Pick Input Image',
    busyPlaceholder: 'Looking for PNG/JPEG files in the workspace…',
    first: [browseItem],
    load: async (token) => {
      const files = await vscode.workspace.findFiles(imageGlob, notSearched, 5000, token);
      files.sort((a, b) => distance(a) - distance(b) || a.fsPath.localeCompare(b.fsPath));
      return {
        items: [browseItem, ...files.map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(path.dirname(uri.fsPath)), uri }))],
        placeholder: files.length ? 'Type to filter the workspace images' : 'No PNG/JPEG files in the workspace: browse for one',
      };
    },
  });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await vscode.window.showOpenDialog({
    canSelectMany: false,
    filters: { Images: ['png', 'jpg', 'jpeg'] },
    openLabel: 'Use Image',
    defaultUri: base ? vscode.Uri.file(base) : undefined,
  });
  return chosen?.[0];
}

/** Folders of the workspace that look like datasets: at least two sub-folders holding images. */
async function datasetCandidates(token: vscode.CancellationToken): Promise<vscode.Uri[]> {
  const images = await vscode.workspace.findFiles(imageGlob, notSearched, 20000, token);
  const classesByRoot = new Map<string, Set<string>>();
  for (const u of images) {
    const classDir = path.dirname(u.fsPath);
    const root = path.dirname(classDir);
    const set = classesByRoot.get(root) ?? new Set<string>();
    set.add(classDir);
    classesByRoot.set(root, set);
  }
  return [...classesByRoot].filter(([, c]) => c.size >= 2).map(([root]) => vscode.Uri.file(root)).sort((a, b) => a.fsPath.localeCompare(b.fsPath));
}

/** The class sub-folders' names of a candidate (none when it cannot be listed any more). */
function classFolders(dir: string): string[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
  } catch {
    return [];
  }
}

/** Where a folder dialog about `model` starts: the workspace folder that holds the model, else the model's own folder. */
function dialogStart(model: vscode.Uri): vscode.Uri {
  return vscode.workspace.getWorkspaceFolder(model)?.uri ?? vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(model.fsPath));
}

/** A dataset folder (one sub-folder per class): the workspace's candidates, or a folder dialog. */
export async function pickDataset(model: vscode.Uri, title = 'Layer Lens: Fine-Tune — dataset folder'): Promise<vscode.Uri | undefined> {
  const browseItem: Item = { label: browse, alwaysShow: true };
  const picked = await pickWhileLoading({
    title,
    busyPlaceholder: 'Looking for dataset folders in the workspace…',
    first: [browseItem],
    load: async (token) => {
      const candidates = await datasetCandidates(token);
      const items: Item[] = candidates.map((uri) => {
        const classes = classFolders(uri.fsPath);
        return { label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), detail: `${classes.length} classes: ${classes.slice(0, 8).join(', ')}${classes.length > 8 ? ', …' : ''}`, uri };
      });
      return {
        items: [...items, browseItem],
        placeholder: candidates.length ? 'A folder with one sub-folder of PNG/JPEG images per class' : 'No dataset folder found in the workspace: browse for one',
      };
    },
  });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel: 'Use as Dataset',
    defaultUri: dialogStart(model),
    title: 'Dataset folder: one sub-folder of images per class',
  });
  return chosen?.[0];
}

/** A folder of images, in a folder dialog that starts at the workspace. */
export async function pickFolder(title: string, model: vscode.Uri, openLabel: string): Promise<vscode.Uri | undefined> {
  const chosen = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel,
    defaultUri: dialogStart(model),
    title,
  });
  return chosen?.[0];
}
