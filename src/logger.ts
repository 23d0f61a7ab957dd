/**
 * The one log of the extension: the "Layer Lens" LogOutputChannel behind a
 * tiny interface, so code that logs does not care where it goes.
 */
import * as vscode from 'vscode';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  debug(message: string): void;
}

export function createLogger(context: vscode.ExtensionContext): { logger: Logger; channel: vscode.LogOutputChannel } {
  const channel = vscode.window.createOutputChannel('Layer Lens', { log: true });
  context.subscriptions.push(channel);
  const logger: Logger = {
    info: (m) => channel.info(m),
    warn: (m) => channel.warn(m),
    error: (m) => channel.error(m),
    debug: (m) => channel.debug(m),
  };
  return { logger, channel };
}
