/**
 * The webview's end of the protocol: an rpc client over the VS Code webview
 * API, plus the event listener for what the host pushes.
 */
import { isRpcMessage, RpcClient } from '../src/protocol/rpc';
import { isEventMessage, type HostEvent, type WebviewApi } from '../src/protocol/webviewApi';

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

export const vscode = acquireVsCodeApi();

export const host = new RpcClient<WebviewApi>({ post: (m) => vscode.postMessage(m) });

export function listen(onEvent: (e: HostEvent) => void): void {
  window.addEventListener('message', (e: MessageEvent<unknown>) => {
    const m = e.data;
    if (isRpcMessage(m)) host.handle(m);
    else if (isEventMessage(m)) onEvent(m.event);
  });
}
