/**
 * Browser entry for scripts/benchGridDraw.ts (not part of the webview bundle): draws a synthetic layer through
 * the inspector's own FeatureMapsView and reports how long each draw took.
 */
import type { LayerInfo, LayerMaps, InspectResult } from '../../src/protocol/inspect';
import { FeatureMapsView } from '../featureMaps';

interface BenchWindow {
  runBench(channels: number, size: number, repeats: number): Promise<number[]>;
}

function synthetic(channels: number, size: number): LayerMaps {
  const data = new Uint8Array(channels * size * size);
  let s = 12345;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s >>> 24;
  }
  return {
    path: 'bench/conv',
    kind: 'map',
    channels,
    height: size,
    width: size,
    fullHeight: size,
    fullWidth: size,
    stats: Array.from({ length: channels }, (_, c) => ({ min: -1, max: 1 + c / channels, mean: c / channels, std: 0.5, zeros: 0.1 })),
    data,
  };
}

(window as unknown as BenchWindow).runBench = async (channels, size, repeats) => {
  const maps = synthetic(channels, size);
  const view = new FeatureMapsView(
    { layerMaps: async () => maps, exportPng: async () => undefined, onSettings: () => undefined },
    { colormap: 'viridis', sort: 'mean', norm: 'channel' },
  );
  document.body.append(view.element);
  const layer: LayerInfo = { path: maps.path, className: 'Conv2D', shape: [size, size, channels], kind: 'map', mean: 0, zeros: 0 };
  const result = { input: { width: 1, height: 1, rgb: new Uint8Array(3) } } as unknown as InspectResult;
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    await view.show(layer, result);
    // Include the browser's own work: wait for the frame that paints the canvas.
    await new Promise((r) => requestAnimationFrame(() => r(undefined)));
    times.push(Number(view.element.dataset['drawMs']));
  }
  return times;
};
