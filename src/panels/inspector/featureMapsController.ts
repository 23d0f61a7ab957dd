/**
 * The host side of an inspector's Feature maps and Grad-CAM tabs: one
 * inspection of the current image (every layer's activations stay in the
 * worker), a layer's maps, Grad-CAM, and saving a grid as PNG.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Normalization } from '../../protocol/model';
import type { Handlers } from '../../protocol/rpc';
import type { WebviewApi } from '../../protocol/webviewApi';
import { badInput, type PanelContext } from './context';

type FeatureMapMethods = 'inspect' | 'layerMaps' | 'gradCam' | 'exportPng';

export class FeatureMapsController {
  /** The preprocessing the user chose in this panel, if any. */
  normalization: Normalization | undefined;

  constructor(
    private readonly panel: PanelContext,
    normalization?: Normalization,
  ) {
    this.normalization = normalization;
  }

  handlers(): Pick<Handlers<WebviewApi>, FeatureMapMethods> {
    const { engine, log } = this.panel.deps;
    const modelPath = this.panel.modelUri.fsPath;
    return {
      inspect: async ({ imagePath, normalization, output }) => {
        const image = imagePath ?? this.panel.imagePath();
        if (!image) throw badInput('No image yet: pick one first.');
        this.panel.setImagePath(image);
        this.normalization = normalization;
        return engine.call('inspect', { modelPath, imagePath: image, normalization, ...(output !== undefined ? { output } : {}) });
      },
      layerMaps: ({ layerPath, maxSize }) => engine.call('layerMaps', { modelPath, layerPath, maxSize }),
      gradCam: ({ layerPath, classIndex }) => engine.call('gradCam', { modelPath, layerPath, classIndex }),
      exportPng: async ({ fileName, png }) => {
        const base = path.basename(fileName).replace(/[^\w.\- ]+/g, '_');
        const target = await vscode.window.showSaveDialog({
          defaultUri: vscode.Uri.joinPath(vscode.Uri.file(path.dirname(modelPath)), base.endsWith('.png') ? base : `${base}.png`),
          filters: { 'PNG image': ['png'] },
          title: 'Export feature-map grid',
        });
        if (!target) return null;
        // The save dialog asked before replacing a file; a model's own file is never replaced (io/output.ts).
        const { writeOutputFile } = await import('../../engine/io/output');
        await writeOutputFile(target.fsPath, png, { force: true });
        log.info(`Exported ${vscode.workspace.asRelativePath(target)}`);
        return target.fsPath;
      },
    };
  }
}
