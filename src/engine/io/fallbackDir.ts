/**
 * Where Layer Lens writes when the place it would normally write cannot be
 * written (a read-only model folder, a full disk): the extension's own
 * storage folder (the host says which, at worker start), else the user's
 * cache folder (`$XDG_CACHE_HOME/layer-lens`, `~/.cache/layer-lens`,
 * `%LOCALAPPDATA%\layer-lens`).
 */
import * as os from 'node:os';
import * as path from 'node:path';

let configured: string | undefined;

/** The extension's storage folder (globalStorageUri), set once by the worker's init. */
export function setFallbackRoot(dir: string | undefined): void {
  configured = dir;
}

export function fallbackRoot(): string {
  if (configured) return configured;
  if (process.env['LAYER_LENS_CACHE']) return process.env['LAYER_LENS_CACHE'];
  if (process.platform === 'win32' && process.env['LOCALAPPDATA']) return path.join(process.env['LOCALAPPDATA'], 'layer-lens');
  const xdg = process.env['XDG_CACHE_HOME'];
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'layer-lens');
}
