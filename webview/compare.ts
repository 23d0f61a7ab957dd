/**
 * The Compare tab: this model (B) against a reference (A, typically the
 * original it was fine-tuned from), on the inspector's current image.
 *
 * - per matched layer, a weight-drift bar (||W_B − W_A|| / ||W_A||) and an
 *   activation-similarity bar (linear CKA over a folder of images), with the
 *   layers that barely moved and those that moved most said in words;
 * - the layers that match nothing on either side (a replaced head), listed;
 * - both models' predictions, each with its own labels;
 * - the selected layer's maps side by side: A | B | |B − A| (A and B on a
 *   shared scale per channel, the difference in magma).
 */
import type { CompareMaps, CompareResult, LayerDrift, SimilarityProgress, SimilarityResult } from '../src/protocol/compare';
import { driftSuggestions } from '../src/protocol/compare';
import type { Colormap } from '../src/protocol/colormap';
import type { LayerMaps } from '../src/protocol/inspect';
import { formatShape, type Normalization } from '../src/protocol/model';
import type { CompareState, CompareTarget } from '../src/protocol/webviewApi';
import { button, progressRing } from './components/toolkit';
import { clear, h, num } from './dom';
import { mapsCanvas } from './canvas';

export interface CompareRequests {
  state(): Promise<CompareState>;
  pickReference(): Promise<CompareTarget | null>;
  pickImageSet(): Promise<string | null>;
  compare(normalization: Normalization): Promise<CompareResult>;
  maps(layerPath: string, maxSize: number): Promise<CompareMaps>;
  similarity(normalization: Normalization, maxImages: number, onProgress: (p: SimilarityProgress) => void, signal: AbortSignal): Promise<SimilarityResult>;
  pickImage(): void;
  /** Something to persist changed (reference, selected layer). */
  onChange(): void;
}

export interface CompareSaved {
  reference?: string;
  selected?: string;
}

const MAX_IMAGES = 32;
const gridMaxSize = 48;

function fmtDrift(v: number | null): string {
  if (v === null) return '—';
  if (v === 0) return '0';
  return v >= 0.1 ? `${(v * 100).toFixed(0)}%` : v >= 0.001 ? `${(v * 100).toFixed(2)}%` : `${(v * 100).toExponential(1)}%`;
}

export class CompareView {
  readonly element = h('div', { class: 'compare' });
  private reference: CompareTarget | null = null;
  private imageSet: string | null = null;
  private result: CompareResult | null = null;
  private sim: SimilarityResult | null = null;
  private simProgress: SimilarityProgress | null = null;
  private simError: string | null = null;
  private error: string | null = null;
  private busy = false;
  private selected: string | undefined;
  private maps: CompareMaps | null = null;
  private mapsError: string | null = null;
  private dirty = true;
  private visible = false;
  private hasImage = false;
  private normalization: Normalization = 'zeroOne';
  private seq = 0;
  private simAbort: AbortController | undefined;

  constructor(
    private readonly requests: CompareRequests,
    saved: CompareSaved = {},
  ) {
    this.selected = saved.selected;
    this.render();
  }

  saved(): CompareSaved {
    return { ...(this.reference ? { reference: this.reference.path } : {}), ...(this.selected ? { selected: this.selected } : {}) };
  }

  /** Reads the host's state; true when the host asked to show the comparison now. */
  async init(): Promise<boolean> {
    const s = await this.requests.state();
    this.reference = s.reference;
    this.imageSet = s.imageSet;
    this.render();
    return s.focus;
  }

  /** The inspector's image or preprocessing changed: compare again when shown. */
  setInput(hasImage: boolean, normalization: Normalization): void {
    this.hasImage = hasImage;
    this.normalization = normalization;
    this.dirty = true;
    if (this.visible) void this.refresh();
    else this.render();
  }

  setReference(target: CompareTarget): void {
    this.reference = target;
    this.sim = null;
    this.dirty = true;
    this.requests.onChange();
    if (this.visible) void this.refresh();
  }

  /** The tab was shown or hidden. */
  setVisible(visible: boolean): void {
    this.visible = visible;
    if (visible && this.dirty) void this.refresh();
  }

  private async refresh(): Promise<void> {
    if (!this.reference || !this.hasImage) {
      this.render();
      return;
    }
    const seq = ++this.seq;
    this.dirty = false;
    this.busy = true;
    this.error = null;
    this.render();
    try {
      const r = await this.requests.compare(this.normalization);
      if (seq !== this.seq) return;
      this.result = r;
      if (!this.selected || !r.layers.some((l) => l.path === this.selected)) this.selected = this.defaultLayer(r);
      this.busy = false;
      this.render();
      await Promise.all([this.loadMaps(), this.measure(seq)]);
    } catch (e) {
      if (seq !== this.seq) return;
      this.busy = false;
      this.result = null;
      this.error = e instanceof Error ? e.message : String(e);
      this.render();
    }
  }

  /** The matched layer that moved most among those with maps, else the first with maps. */
  private defaultLayer(r: CompareResult): string | undefined {
    const withMaps = r.layers.filter((l) => l.kind === 'map' && l.className !== 'InputLayer' && !l.isContainer);
    const moved = [...withMaps].sort((a, b) => (b.weightDrift ?? 0) - (a.weightDrift ?? 0))[0];
    return moved?.path ?? withMaps[0]?.path ?? r.layers[0]?.path;
  }

  private async measure(seq: number): Promise<void> {
    this.simAbort?.abort();
    const abort = new AbortController();
    this.simAbort = abort;
    this.simProgress = { done: 0, total: 0 };
    this.simError = null;
    this.render();
    try {
      const sim = await this.requests.similarity(this.normalization, MAX_IMAGES, (p) => {
        if (seq !== this.seq) return;
        this.simProgress = p;
        this.renderSimStatus();
      }, abort.signal);
      if (seq !== this.seq) return;
      this.sim = sim;
    } catch (e) {
      if (seq !== this.seq || abort.signal.aborted) return;
      this.simError = e instanceof Error ? e.message : String(e);
    }
    this.simProgress = null;
    this.render();
  }

  private async loadMaps(): Promise<void> {
    const layer = this.result?.layers.find((l) => l.path === this.selected);
    this.maps = null;
    this.mapsError = null;
    if (!layer || layer.kind === 'other') {
      this.render();
      return;
    }
    const want = layer.path;
    try {
      const m = await this.requests.maps(want, gridMaxSize);
      if (this.selected !== want) return;
      this.maps = m;
    } catch (e) {
      if (this.selected !== want) return;
      this.mapsError = e instanceof Error ? e.message : String(e);
    }
    this.render();
  }

  private select(path: string): void {
    if (this.selected === path) return;
    this.selected = path;
    this.requests.onChange();
    this.render();
    void this.loadMaps();
  }

  private async changeReference(): Promise<void> {
    const t = await this.requests.pickReference();
    if (t) this.setReference(t);
  }

  private async changeImageSet(): Promise<void> {
    const folder = await this.requests.pickImageSet();
    if (!folder) return;
    this.imageSet = folder;
    this.sim = null;
    if (this.result) void this.measure(this.seq);
  }

  private simStatusEl: HTMLElement | undefined;

  private renderSimStatus(): void {
    if (!this.simStatusEl) return;
    const p = this.simProgress;
    this.simStatusEl.textContent = p && p.total ? `image ${p.done}/${p.total}` : '';
  }

  private render(): void {
    clear(this.element);
    this.simStatusEl = undefined;
    const head = h(
      'div',
      { class: 'cmp-head' },
      h('span', { class: 'cmp-ab' }, h('span', { class: 'cmp-tag' }, 'A'), this.reference ? h('strong', { title: this.reference.path }, this.reference.name) : h('span', { class: 'muted' }, 'no reference yet')),
      h('span', { class: 'cmp-ab' }, h('span', { class: 'cmp-tag' }, 'B'), h('strong', {}, this.result?.b.name ?? 'this model')),
      button(this.reference ? 'Change…' : 'Compare with…', () => void this.changeReference(), { secondary: !!this.reference, title: 'Pick the reference model (A), e.g. the original this model was fine-tuned from' }),
    );
    this.element.append(head);
    if (!this.reference) {
      this.element.append(h('p', { class: 'empty' }, 'Compare this model with another one that takes the same input — typically the original it was fine-tuned from: how far each layer’s weights moved, how similar its activations stayed, and its maps side by side.'));
      return;
    }
    if (!this.hasImage) {
      this.element.append(h('div', { class: 'empty' }, h('p', {}, 'No image yet: the comparison runs both models on the inspector’s image.'), button('Pick Image…', () => this.requests.pickImage())));
      return;
    }
    if (this.busy) this.element.append(progressRing('Running both models…'));
    if (this.error) this.element.append(h('p', { class: 'error' }, this.error));
    const r = this.result;
    if (!r) return;
    for (const n of r.notes) this.element.append(h('p', { class: 'muted cmp-note' }, n));
    this.element.append(this.driftSection(r), this.sideBySide(r), this.unmatched(r), this.predictions(r));
  }

  private driftSection(r: CompareResult): HTMLElement {
    const sim = this.sim;
    const cka = new Map((sim?.layers ?? []).map((l) => [l.path, l]));
    const maxDrift = Math.max(1e-12, ...r.layers.map((l) => l.weightDrift ?? 0));
    const suggestions = driftSuggestions(r.layers, sim?.layers);
    const status = h('span', { class: 'busy cmp-sim-status', 'aria-live': 'polite' });
    this.simStatusEl = status;
    const section = h(
      'section',
      { class: 'cmp-drift', 'aria-label': 'Layer drift' },
      h('h2', {}, 'Layer drift'),
      h(
        'div',
        { class: 'cmp-sim-bar' },
        h(
          'span',
          { class: 'muted' },
          sim
            ? `Similarity: linear CKA over ${sim.images} image${sim.images === 1 ? '' : 's'}${sim.folder ? ` from ${sim.folder.split(/[\\/]/).pop()}` : ''}${sim.found > sim.images ? ` (of ${sim.found})` : ''}`
            : this.imageSet
              ? `Similarity: linear CKA over up to ${MAX_IMAGES} images from ${this.imageSet.startsWith("the fine-tune's") ? this.imageSet : this.imageSet.split(/[\\/]/).pop()}`
              : 'Similarity: pick a folder of images',
        ),
        button('Images…', () => void this.changeImageSet(), { secondary: true, title: 'The folder of images the activation similarity is measured on' }),
        status,
      ),
    );
    if (this.simProgress) section.append(progressRing('Measuring activation similarity…'));
    this.renderSimStatus();
    if (this.simError) section.append(h('p', { class: 'error' }, this.simError));
    for (const n of sim?.notes ?? []) section.append(h('p', { class: 'muted cmp-note' }, n));
    const list = h('div', { class: 'cmp-rows', role: 'list' });
    list.append(
      h('div', { class: 'cmp-row cmp-row-head', 'aria-hidden': 'true' }, h('span', {}, 'Layer'), h('span', {}, 'weight drift ||W_B − W_A|| / ||W_A||'), h('span', {}, 'activation similarity (CKA)')),
    );
    for (const l of r.layers) list.append(this.row(l, maxDrift, cka.get(l.path)?.cka));
    section.append(list);
    const advice = h('div', { class: 'cmp-advice', 'aria-live': 'polite' });
    for (const line of suggestions.lines) advice.append(h('p', {}, line));
    section.append(advice);
    return section;
  }

  private row(l: LayerDrift, maxDrift: number, cka: number | null | undefined): HTMLElement {
    const driftBar = h('span', { class: 'cmp-bar cmp-bar-drift' });
    driftBar.style.width = `${l.weightDrift === null ? 0 : Math.max(l.weightDrift > 0 ? 1 : 0, (l.weightDrift / maxDrift) * 100)}%`;
    const ckaBar = h('span', { class: 'cmp-bar cmp-bar-cka' });
    ckaBar.style.width = `${typeof cka === 'number' ? cka * 100 : 0}%`;
    const frozen = l.weightDrift === 0;
    const name = h('span', { class: 'cmp-name', title: `${l.path}${l.matchedBy === 'name' ? ` (B: ${l.pathB})` : ''} · ${l.className} · ${formatShape(l.shape)}` }, l.depth > 0 ? (l.path.split('/').pop() ?? l.path) : l.path);
    name.style.paddingLeft = `${l.depth * 12}px`;
    const row = h(
      'div',
      { class: `cmp-row${this.selected === l.path ? ' selected' : ''}${l.isContainer ? ' container' : ''}`, role: 'listitem', tabindex: 0, 'aria-label': `${l.path}: weight drift ${fmtDrift(l.weightDrift)}, CKA ${typeof cka === 'number' ? cka.toFixed(3) : 'unknown'}` },
      name,
      h('span', { class: 'cmp-cell', title: l.driftNote ?? `||W_B − W_A|| = ${num(l.weightChange)}, ||W_A|| = ${num(l.weightNorm)}` }, h('span', { class: 'cmp-track' }, driftBar), h('span', { class: `cmp-val${frozen ? ' cmp-zero' : ''}` }, frozen ? '0 · unchanged' : fmtDrift(l.weightDrift))),
      h('span', { class: 'cmp-cell' }, h('span', { class: 'cmp-track' }, ckaBar), h('span', { class: 'cmp-val' }, typeof cka === 'number' ? cka.toFixed(3) : cka === null ? 'n/a' : '…')),
    );
    row.addEventListener('click', () => this.select(l.path));
    row.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        this.select(l.path);
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const next = (e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling) as HTMLElement | null;
        if (next?.classList.contains('cmp-row') && !next.classList.contains('cmp-row-head')) next.focus();
      }
    });
    return row;
  }

  private sideBySide(r: CompareResult): HTMLElement {
    const l = r.layers.find((x) => x.path === this.selected);
    const box = h('section', { class: 'cmp-maps', 'aria-label': 'Maps side by side' });
    const title = l ? `${l.path} · ${formatShape(l.shape)}` : 'Pick a layer below';
    box.append(h('h2', {}, title));
    if (!l) return box;
    if (l.kind === 'other') {
      box.append(h('p', { class: 'empty' }, `${l.path} outputs shape ${formatShape(l.shape)}: no maps to show.`));
      return box;
    }
    if (this.mapsError) {
      box.append(h('p', { class: 'error' }, this.mapsError));
      return box;
    }
    const m = this.maps;
    if (!m || m.path !== l.path) {
      box.append(progressRing(`Loading ${l.path}…`));
      return box;
    }
    // Three figures side by side in the tab's width.
    const width = Math.max(96, Math.min(300, Math.floor(((this.element.clientWidth || 900) - 40) / 3)));
    const fig = (maps: LayerMaps, colormap: Colormap, caption: string, label: string) =>
      h('figure', { class: 'cmp-fig' }, mapsCanvas(maps, colormap, label, width), h('figcaption', {}, caption));
    box.append(
      h(
        'div',
        { class: 'cmp-figs' },
        fig(m.a, 'viridis', `A · ${r.a.name}`, `${l.path} of ${r.a.name}`),
        fig(m.b, 'viridis', `B · ${r.b.name}`, `${l.path} of ${r.b.name}`),
        fig(m.diff, 'magma', '|B − A|', `absolute difference of ${l.path}`),
      ),
      h(
        'p',
        { class: 'muted' },
        `A and B share one scale per channel; the difference is drawn against that range (black: equal, bright: as large as the channel's range). Largest |B − A|: ${num(m.maxAbsDiff)}. ` +
          `Weight drift ${fmtDrift(l.weightDrift)}${l.activationChange === null ? '' : `, activation change on this image ${fmtDrift(l.activationChange)}`}.`,
      ),
    );
    return box;
  }

  private unmatched(r: CompareResult): HTMLElement {
    const box = h('section', { class: 'cmp-unmatched', 'aria-label': 'Unmatched layers' });
    if (r.onlyA.length + r.onlyB.length === 0) return box;
    box.append(h('h2', {}, 'Not compared'));
    const list = (tag: string, items: CompareResult['onlyA']) => {
      const ul = h('ul', {});
      for (const u of items) ul.append(h('li', {}, h('span', { class: 'cmp-tag' }, tag), ` ${u.path} `, h('span', { class: 'muted' }, `${u.className} ${formatShape(u.shape)} — ${u.reason}`)));
      return ul;
    };
    if (r.onlyA.length) box.append(list('A', r.onlyA));
    if (r.onlyB.length) box.append(list('B', r.onlyB));
    return box;
  }

  private predictions(r: CompareResult): HTMLElement {
    const col = (tag: string, s: CompareResult['a']) => {
      const ol = h('ol', { class: 'predictions', 'aria-label': `Top predictions of ${s.name}` });
      for (const p of s.predictions) {
        const pct = s.probabilities ? `${(p.probability * 100).toFixed(1)}%` : p.probability.toPrecision(3);
        const bar = h('span', { class: 'pbar' });
        bar.style.width = `${Math.max(0, Math.min(1, s.probabilities ? p.probability : 0)) * 100}%`;
        ol.append(h('li', {}, h('span', { class: 'plabel' }, p.label), h('span', { class: 'pval' }, pct), h('span', { class: 'ptrack' }, bar)));
      }
      return h('div', { class: 'cmp-pred' }, h('h3', {}, h('span', { class: 'cmp-tag' }, tag), ` ${s.name}`), ol);
    };
    return h('section', { class: 'cmp-preds', 'aria-label': 'Predictions of both models' }, h('h2', {}, 'Predictions'), h('div', { class: 'cmp-pred-cols' }, col('A', r.a), col('B', r.b)));
  }
}
