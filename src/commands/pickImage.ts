/**
 * Picking an input image: a quick pick of the workspace's PNG/JPEG files
 * (nearest to the model first), with "Browse…" for a file dialog.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';

const browse = '$(folder-opened) Browse…';

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
