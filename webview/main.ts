/**
 * The inspector webview: header (model, backend, parameter counts, image and
 * preprocessing), the layer list on the left, tabs in the centre (feature
 * maps, Grad-CAM, training), the input image and top-k predictions on the
 * right. It posts `ready` first and renders what the host answers; all later
 * host pushes go through one exhaustive switch. UI state survives reloads via
 * getState/setState.
 */
import type { Colormap, InspectResult, LayerInfo } from '../src/protocol/inspect';
import { trainableCounts } from '../src/protocol/freezePlan';
import { formatCount, formatOutputs, normalizationLabels, normalizations, type ModelSummary, type Normalization } from '../src/protocol/model';
import type { HostEvent, InitState, ProbeState, TrainingSnapshot } from '../src/protocol/webviewApi';
import { badge, button, dropdown, progressRing, registerComponents, setDropdown, tabs, textField } from './components/toolkit';
import { append, clear, h } from './dom';
import { FeatureMapsView, type MapsSettings } from './featureMaps';
import { host, listen, vscode } from './host';
import { LayerList } from './layerList';
import { GradCamView } from './gradCam';
import { TrainingView } from './training';
import { LatentMapView, type LatentSettings } from './latentMap';
import { CompareView, type CompareSaved } from './compare';
import { rgbCanvas } from './canvas';
import { showImage } from './imagePreview';
import { outputElements } from './outputs';

interface SavedState {
  modelPath?: string;
  imagePath?: string | null;
  normalization?: Normalization;
  selected?: string;
  tab?: string;
  maps?: MapsSettings;
  latent?: LatentSettings;
  compare?: CompareSaved;
  /** The Compare tab's reference model: the host's serializer reads it after a reload. */
  reference?: string;
  /** The Training tab's run (after a window reload the host has none). */
  training?: TrainingSnapshot;
  /** Which output's predictions show, for a model with several. */
  output?: number;
}

const saved = (vscode.getState() as SavedState | undefined) ?? {};
// Save the model's path at once (the host writes it into the page), so a
// window reload before the model has loaded still restores this panel.
saved.modelPath ??= document.getElementById('root')?.dataset['modelPath'];
vscode.setState(saved);

const state = {
  summary: null as ModelSummary | null,
  error: null as string | null,
  frozen: [] as string[],
  normalization: 'zeroOne' as Normalization,
  normalizationSource: '',
  imagePath: null as string | null,
  result: null as InspectResult | null,
  selected: saved.selected,
  tab: saved.tab ?? 'maps',
  output: saved.output ?? 0,
  trusted: true,
  backend: null as string | null,
  inspecting: false,
  inspectError: null as string | null,
};

function persist(): void {
  const s: SavedState = {
    modelPath: state.summary?.modelPath ?? saved.modelPath,
    imagePath: state.imagePath,
    normalization: state.normalization,
    selected: state.selected,
    tab: state.tab,
    maps: mapsSettings,
    latent: latentView.settings(),
    compare: compareView.saved(),
    reference: compareView.saved().reference,
    training: training.snapshot(),
    output: state.output,
  };
  vscode.setState(s);
}

let mapsSettings: MapsSettings = saved.maps ?? { colormap: 'viridis' as Colormap, sort: 'auto', norm: 'channel' };

registerComponents();
const root = document.getElementById('root')!;

const headerEl = h('header', { class: 'top' });
const layerList = new LayerList({
  onSelect: (path) => selectLayer(path),
  onToggleFreeze: (paths, frozen) => void host.call('setFrozen', { paths, frozen }),
  onActivate: (path) => activateLayer(path),
});
const filter = textField('Filter layers', 'Filter layers (/)', (v) => layerList.setFilter(v));
const mapsView = new FeatureMapsView(
  {
    layerMaps: (layerPath, maxSize) => host.call('layerMaps', { layerPath, maxSize }),
    exportPng: async (fileName, png) => void (await host.call('exportPng', { fileName, png: png as Uint8Array<ArrayBuffer> })),
    onSettings: (s) => {
      mapsSettings = s;
      persist();
    },
  },
  mapsSettings,
);
const gradCam = new GradCamView((layerPath, classIndex) => host.call('gradCam', { layerPath, classIndex }));
const training = new TrainingView(
  () => void host.call('stopTraining', {}),
  () => host.call('augmentPreview', {}),
  (id) => void host.call('runAction', { id }),
  () => persist(),
);
const compareView = new CompareView(
  {
    state: () => host.call('compareState', {}),
    pickReference: () => host.call('pickReference', {}),
    pickImageSet: () => host.call('pickImageSet', {}),
    compare: (normalization) => host.call('compare', { normalization }),
    maps: (layerPath, maxSize) => host.call('compareMaps', { layerPath, maxSize }),
    similarity: (normalization, maxImages, onProgress, signal) => host.call('compareSimilarity', { normalization, maxImages }, { onProgress, signal }),
    pickImage: () => void pickImage(),
    onChange: () => persist(),
  },
  saved.compare,
);
const latentView = new LatentMapView(
  {
    state: () => host.call('latentState', {}),
    pickFolder: () => host.call('latentPickFolder', {}),
    map: (params, onProgress, signal) => host.call('latentMap', params, { onProgress, signal }),
    neighbors: (index, k) => host.call('latentNeighbors', { index, k }),
    thumbnail: (index) => host.call('latentThumbnail', { index }),
    exportTsv: () => host.call('latentExport', {}),
    openImage: (p) => void showImage(p),
    normalization: () => state.normalization,
    onSettings: () => persist(),
    focus: () => {
      state.tab = 'latent';
      centerTabs.select('latent');
      latentView.setVisible(true);
      persist();
    },
  },
  saved.latent,
);
const centerTabs = tabs(
  [
    { id: 'maps', label: 'Feature maps' },
    { id: 'gradcam', label: 'Grad-CAM' },
    { id: 'training', label: 'Training' },
    { id: 'latent', label: 'Latent' },
    { id: 'compare', label: 'Compare' },
  ],
  (id) => {
    latentView.setVisible(id === 'latent');
    gradCam.setVisible(id === 'gradcam');
    compareView.setVisible(id === 'compare');
    state.tab = id;
    persist();
  },
);
centerTabs.views['maps'].append(mapsView.element);
centerTabs.views['gradcam'].append(gradCam.element);
centerTabs.views['training'].append(training.element);
centerTabs.views['latent'].append(latentView.element);
centerTabs.views['compare'].append(compareView.element);
const side = h('aside', { class: 'side' });
const totalsEl = h('div', { class: 'totals' });
const left = h('section', { class: 'left', 'aria-label': 'Layers' }, h('div', { class: 'left-head' }, filter), layerList.element, totalsEl);
const center = h('section', { class: 'center' }, centerTabs.element);
root.append(headerEl, h('main', { class: 'layout' }, left, center, side));

function trainableCount(): { trainable: number; total: number } {
  return state.summary ? trainableCounts(state.summary.layers, state.frozen) : { trainable: 0, total: 0 };
}

function renderHeader(): void {
  clear(headerEl);
  const s = state.summary;
  const counts = trainableCount();
  const normOptions = normalizations.map((value) => ({ value, label: normalizationLabels[value] }));
  const norm = dropdown('Preprocessing', normOptions, state.normalization, (v) => {
    state.normalization = v;
    state.normalizationSource = 'chosen here';
    persist();
    void inspect();
  });
  norm.title = `Preprocessing: ${state.normalizationSource}`;
  append(
    headerEl,
    h('h1', {}, s?.name ?? 'Layer Lens'),
    state.backend ? badge(state.backend) : null,
    s?.onnx
      ? h('span', { class: 'params', title: `${s.onnx.producer ? `made by ${s.onnx.producer}; ` : ''}input ${s.onnx.inputName} (${s.onnx.layout}); the backbone stays frozen, Fine-Tune trains a new head` }, `${formatCount(s.totalParams)} params`)
      : s
        ? h('span', { class: 'params', title: `${formatCount(counts.trainable)} of ${formatCount(counts.total)} parameters trainable` }, `${formatCount(counts.total)} params (${formatCount(counts.trainable)} trainable)`)
        : null,
    s?.format === 'graph' ? h('span', { class: 'muted' }, 'graph model · inference only') : null,
    s && s.outputs?.length > 1 ? h('span', { class: 'muted', title: formatOutputs(s) }, `${s.outputs.length} outputs`) : null,
    s?.preprocessing
      ? h('span', { class: 'muted preprocessing', title: s.normalizationFrom ?? '' }, `scales its own input (${s.preprocessing.className} ${s.preprocessing.description})`)
      : null,
    s?.onnx ? h('span', { class: 'muted' }, `ONNX opset ${s.onnx.opset} · ONNX Runtime ${s.onnx.runtime}`) : null,
    h('span', { class: 'spacer' }),
    // Before an image is chosen the one "Pick Image…" is the feature maps' empty state.
    state.imagePath ? button('Pick Image…', () => void pickImage(), { secondary: true, title: 'Choose another input image' }) : null,
    h('label', { class: 'norm-label' }, 'pixels ', norm),
  );
  setDropdown(norm, state.normalization);
  totalsEl.textContent = s?.onnx ? `${s.layers.filter((r) => !r.parent).length} nodes · ${formatCount(s.totalParams)} parameters` : s ? `${s.layers.length} layers · ${formatCount(counts.trainable)} of ${formatCount(counts.total)} parameters trainable` : '';
}

function renderSide(): void {
  clear(side);
  const r = state.result;
  if (!state.imagePath) {
    side.append(h('div', { class: 'empty' }, h('p', {}, 'No image yet: the input image and the top predictions show here.')));
    return;
  }
  side.append(h('div', { class: 'image-path', title: state.imagePath }, state.imagePath.split(/[\\/]/).pop() ?? ''));
  if (state.inspecting) side.append(progressRing('Computing…'));
  if (state.inspectError) side.append(h('p', { class: 'error' }, state.inspectError));
  if (!r) return;
  const canvas = rgbCanvas(r.input.width, r.input.height, r.input.rgb, { class: 'input-image', role: 'img', 'aria-label': 'Input image as the model sees it' });
  canvas.addEventListener('click', () => void showImage(r.imagePath));
  side.append(canvas, h('div', { class: 'muted' }, `${r.ms} ms · ${r.layers.length} layers`), probeEl);
  renderProbe();
  side.append(
    ...outputElements(r, (index) => {
      state.output = index;
      persist();
      void inspect();
    }),
  );
}

function renderLayers(): void {
  const s = state.summary;
  latentView.setModel(s);
  layerList.setRows(s?.layers ?? [], state.trusted && s?.format === 'layers');
  layerList.setFrozen(state.frozen);
}

function renderAll(): void {
  renderHeader();
  renderLayers();
  renderSide();
  if (state.error) {
    mapsView.clear(h('div', { class: 'error-box' }, h('strong', {}, 'The model failed to load'), h('p', {}, state.error)));
    return;
  }
  if (!state.imagePath) mapsView.clear(h('div', { class: 'empty' }, h('p', {}, 'No image yet: pick one to see what every layer does to it.'), button('Pick Image…', () => void pickImage())));
  gradCam.setModel(state.summary, state.result);
}

function infoFor(path: string | undefined): LayerInfo | undefined {
  return state.result?.layers.find((l) => l.path === path);
}

/** Live maps: the image and layer the next fine-tune watches (the current ones unless pinned). */
let probe: ProbeState | null = null;
const probeEl = h('div', { class: 'probe' });

function renderProbe(): void {
  clear(probeEl);
  const name = (p: string) => p.split(/[\\/]/).pop() ?? p;
  if (probe?.pinned) {
    probeEl.append(
      h('span', { class: 'muted', title: `${probe.imagePath} · ${probe.layerPath}` }, `Probe: ${name(probe.imagePath)} · ${probe.layerPath}`),
      button('Unpin', () => void setProbe(null, false), { secondary: true, title: 'Fine-tunes watch the current image and layer again' }),
    );
  } else {
    probeEl.append(
      button('Pin as probe', () => void setProbe(state.selected ?? null, true), {
        secondary: true,
        title: 'Watch this image’s maps of the selected layer in the Training tab after every epoch of the next fine-tune',
      }),
    );
  }
}

async function setProbe(layerPath: string | null, pinned: boolean): Promise<void> {
  try {
    probe = await host.call('setProbe', { layerPath, pinned });
  } catch {
    // No image or layer yet: the button stays.
  }
  renderProbe();
}

function selectLayer(path: string): void {
  state.selected = path;
  if (state.tab === 'gradcam') gradCam.useLayer(path);
  void setProbe(path, false);
  persist();
  const info = infoFor(path);
  if (info && state.result) void mapsView.show(info, state.result);
  else if (state.result) mapsView.clear(`${path} has no output of its own to show (a nested model: pick a layer inside it).`);
}

/**
 * The first layer with a channel grid, for a first look. Not a nested model's
 * row: that is its output (often the backbone's last, widest layer), not its
 * first layer.
 */
function defaultLayer(r: InspectResult): string | undefined {
  const containers = new Set(state.summary?.layers.filter((l) => l.isContainer).map((l) => l.path));
  const leaves = r.layers.filter((l) => !containers.has(l.path));
  return leaves.find((l) => l.kind === 'map' && l.className !== 'InputLayer')?.path ?? leaves[0]?.path ?? r.layers[0]?.path;
}

/** Enter on a layer in the list: what it means depends on the tab that shows. */
function activateLayer(path: string): void {
  if (state.tab === 'maps') {
    mapsView.openFirst();
    mapsView.element.focus();
  } else if (state.tab === 'gradcam') gradCam.useLayer(path);
}

async function pickImage(): Promise<void> {
  const picked = await host.call('pickImage', {});
  if (!picked) return;
  state.imagePath = picked;
  renderHeader();
  persist();
  await inspect();
}

let inspectSeq = 0;
async function inspect(): Promise<void> {
  if (!state.imagePath || !state.summary) return;
  const seq = ++inspectSeq;
  state.inspecting = true;
  state.inspectError = null;
  renderSide();
  try {
    const outputs = state.summary.outputs?.length ?? 1;
    const result = await host.call('inspect', { imagePath: state.imagePath, normalization: state.normalization, ...(outputs > 1 ? { output: Math.min(state.output, outputs - 1) } : {}) });
    if (seq !== inspectSeq) return;
    state.result = result;
    layerList.setInfos(result.layers);
    if (!state.selected || !infoFor(state.selected)) state.selected = defaultLayer(result);
    layerList.select(state.selected);
    if (state.selected) selectLayer(state.selected);
    gradCam.setModel(state.summary, result);
    compareView.setInput(true, state.normalization);
  } catch (e) {
    if (seq !== inspectSeq) return;
    state.result = null;
    state.inspectError = e instanceof Error ? e.message : String(e);
    mapsView.clear(h('p', { class: 'error' }, state.inspectError));
  } finally {
    if (seq === inspectSeq) {
      state.inspecting = false;
      renderSide();
    }
  }
}

function onEvent(e: HostEvent): void {
  switch (e.type) {
    case 'model':
      state.summary = e.summary;
      state.error = e.error;
      renderAll();
      if (e.summary) void inspect();
      break;
    case 'backend':
      state.backend = e.name;
      renderHeader();
      break;
    case 'freeze':
      state.frozen = e.frozen;
      layerList.setFrozen(state.frozen);
      renderHeader();
      break;
    case 'image':
      state.imagePath = e.imagePath;
      renderHeader();
      persist();
      void inspect();
      break;
    case 'train':
      training.onProgress(e.progress);
      if (e.progress.type === 'start' && state.tab !== 'training') {
        state.tab = 'training';
        centerTabs.select('training');
        persist();
      }
      break;
    case 'latent':
      latentView.show(e.datasetDir, e.layerPath);
      break;
    case 'trainStopped':
      training.stopped(e.status, e.message);
      break;
    case 'trainCard':
      training.setCard(e.card);
      break;
    case 'augmentPreview':
      training.setPreview(e.preview);
      state.tab = 'training';
      centerTabs.select('training');
      persist();
      break;
    case 'compare':
      state.tab = 'compare';
      centerTabs.select('compare');
      compareView.setVisible(true);
      compareView.setReference(e.reference);
      persist();
      break;
    default: {
      const never: never = e;
      void never;
    }
  }
}

document.addEventListener('keydown', (e) => {
  const target = e.target as HTMLElement;
  const typing = target.tagName === 'INPUT' || target.tagName === 'VSCODE-TEXT-FIELD';
  if (e.key === '/' && !typing) {
    e.preventDefault();
    (filter as HTMLElement).focus();
  }
});

listen(onEvent);

async function start(): Promise<void> {
  const init: InitState = await host.call('ready', {});
  state.summary = init.summary;
  state.error = init.error;
  state.backend = init.backend;
  state.frozen = init.frozen;
  state.normalization = saved.normalization ?? init.normalization;
  state.normalizationSource = saved.normalization ? 'chosen here' : init.normalizationSource;
  state.imagePath = init.imagePath ?? saved.imagePath ?? null;
  state.trusted = init.workspaceTrusted;
  // The Training tab: the host's record of the run (it survives the webview), else what this webview saved.
  const run = await host.call('trainingState', {}).catch(() => null);
  if (run) training.restore(run);
  else if (saved.training) training.restore(saved.training);
  persist();
  renderAll();
  if (await compareView.init().catch(() => false)) state.tab = 'compare';
  centerTabs.select(state.tab);
  latentView.setVisible(state.tab === 'latent');
  gradCam.setVisible(state.tab === 'gradcam');
  void latentView.start();
  compareView.setVisible(state.tab === 'compare');
  if (state.summary && state.imagePath) await inspect();
}

void start();
