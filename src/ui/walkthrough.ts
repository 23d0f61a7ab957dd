/**
 * The first time Layer Lens runs in a VS Code profile, its walkthrough ("Get
 * started with Layer Lens") opens, as VS Code opens an extension's walkthrough
 * after an install from the Marketplace; an extension copied into place (the
 * demo in code-server, a .vsix in some editors) never gets that. The user's
 * `workbench.welcomePage.walkthroughs.openOnInstall` setting turns both off.
 */
import * as vscode from 'vscode';

const shownKey = 'layerLens.walkthroughShown';

export function openWalkthroughOnce(context: vscode.ExtensionContext): vscode.Disposable {
  const wanted = vscode.workspace.getConfiguration('workbench.welcomePage').get<boolean>('walkthroughs.openOnInstall', true);
  if (wanted && !context.globalState.get<boolean>(shownKey)) {
    void context.globalState.update(shownKey, true);
    void vscode.commands.executeCommand('workbench.action.openWalkthrough', `${context.extension.id}#getStarted`, false).then(undefined, () => undefined);
  }
  return { dispose: () => undefined };
}
