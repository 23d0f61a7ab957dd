/**
 * The pickers commands and panels share: an input image (a quick pick of the
 * workspace's PNG/JPEG files, nearest to the model first, with "Browse…" for
 * a file dialog), a folder of images, a dataset folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

const browse = '$(folder-opened) Browse…';

/** An input image. */
export async function pickImage(near?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const files = await vscode.workspace.findFiles('**/*.{png,PNG,jpg,JPG,jpeg,JPEG}', '{**/node_modules/**,**/.git/**}', 5000);
  const base = near ? path.dirname(near.fsPath) : undefined;
  const distance = (u: vscode.Uri) => (base ? path.relative(base, u.fsPath).split(path.sep).length : 0);
  files.sort((a, b) => distance(a) - distance(b) || a.fsPath.localeCompare(b.fsPath));
  type Item = vscode.QuickPickItem & { uri?: vscode.Uri };
  const items: Item[] = [
    { label: browse, alwaysShow: true },
    ...files.map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(path.dirname(uri.fsPath)), uri })),
  ];
  const picked = await vscode.window.showQuickPick(items, {
    title: 'Layer Lens: Pick Input Image',
    placeHolder: files.length ? 'Type to filter the workspace images' : 'No PNG/JPEG files in the workspace: browse for one',
    matchOnDescription: true,
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
async function datasetCandidates(): Promise<vscode.Uri[]> {
  const images = await vscode.workspace.findFiles('**/*.{png,PNG,jpg,JPG,jpeg,JPEG}', '{**/node_modules/**,**/.git/**}', 20000);
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

/** Where a folder dialog about `model` starts: the workspace folder that holds the model, else the model's own folder. */
function dialogStart(model: vscode.Uri): vscode.Uri {
  return vscode.workspace.getWorkspaceFolder(model)?.uri ?? vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(model.fsPath));
}

/** A dataset folder (one sub-folder per class): the workspace's candidates, or a folder dialog. */
export async function pickDataset(model: vscode.Uri, title = 'Layer Lens: Fine-Tune — dataset folder'): Promise<vscode.Uri | undefined> {
  const candidates = await datasetCandidates();
  type Item = vscode.QuickPickItem & { uri?: vscode.Uri };
  const items: Item[] = [
    ...candidates.map((uri) => {
      const classes = fs.readdirSync(uri.fsPath, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
      return { label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), detail: `${classes.length} classes: ${classes.slice(0, 8).join(', ')}${classes.length > 8 ? ', …' : ''}`, uri };
    }),
    { label: browse, alwaysShow: true },
  ];
  const picked = await vscode.window.showQuickPick(items, {
    title,
    placeHolder: candidates.length ? 'A folder with one sub-folder of PNG/JPEG images per class' : 'No dataset folder found in the workspace: browse for one',
    matchOnDescription: true,
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
