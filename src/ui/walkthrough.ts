/**
 * `npm run demo:vscode` starts code-server with LAYER_LENS_WALKTHROUGH=1, and
 * then Layer Lens opens its walkthrough ("Get started with Layer Lens") when
 * it first runs in that profile: an extension copied into place never gets
 * the walkthrough VS Code opens after an install from the Marketplace, and
 * the demo's first screen was VS Code for the Web's own walkthrough instead.
 * Anywhere else VS Code decides (workbench.welcomePage.walkthroughs.openOnInstall).
 */
import * as vscode from 'vscode';

const shownKey = 'layerLens.walkthroughShown';
export const walkthroughEnv = 'LAYER_LENS_WALKTHROUGH';

export function openWalkthroughOnce(context: vscode.ExtensionContext): vscode.Disposable {
  if (process.env[walkthroughEnv] === '1' && !context.globalState.get<boolean>(shownKey)) {
    void context.globalState.update(shownKey, true);
    void vscode.commands.executeCommand('workbench.action.openWalkthrough', `${context.extension.id}#getStarted`, false).then(undefined, () => undefined);
  }
  return { dispose: () => undefined };
}
