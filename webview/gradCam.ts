/**
 * The Grad-CAM tab: where a conv layer (nested backbones included) looked for
 * a class. Computed as soon as the tab shows (and again when the image, the
 * layer or the class changes); the heatmap is laid over a grey copy of the
 * input so that its colours stand out whatever the image's, with an opacity
 * slider and the colour scale beside it. ONNX models get Score-CAM instead
 * (ONNX Runtime has no gradients): any node with a feature map, its channels
 * weighed by how much of the class score the input masked by each keeps.
 */
import type { GradCamResult, InspectResult } from '../src/protocol/inspect';
import type { ModelSummary } from '../src/protocol/model';
import { colormapLut } from '../src/protocol/colormap';
import { dropdown, progressRing } from './components/toolkit';
import { clear, h } from './dom';

const colormap = 'magma';

export class GradCamView {
  readonly element = h('div', { class: 'gradcam' });
  private summary: ModelSummary | null = null;
  private result: InspectResult | null = null;
  private layer: string | undefined;
  private classIndex = 0;
  private heat: GradCamResult | undefined;
  private error: string | undefined;
  private alpha = 0.6;
  private visible = false;
  private running: string | undefined;
  private seq = 0;

  constructor(private readonly compute: (layerPath: string, classIndex: number) => Promise<GradCamResult>) {
    this.render();
  }

  setModel(summary: ModelSummary | null, result: InspectResult | null): void {
    const changed = summary?.modelPath !== this.summary?.modelPath || result !== this.result;
    this.summary = summary;
    this.result = result;
    if (changed) this.forget();
    const convs = this.convLayers();
    if (!this.layer || !convs.includes(this.layer)) this.layer = convs[convs.length - 1];
    if (changed && result?.predictions[0]) this.classIndex = result.predictions[0].index;
    this.render();
    this.refresh();
  }

  /** The tab shows or hides: it computes only while shown. */
  setVisible(visible: boolean): void {
    this.visible = visible;
    this.refresh();
  }

  /** A layer picked in the layer list: used when it is a conv layer with a spatial output. */
  useLayer(path: string): boolean {
    if (!this.convLayers().includes(path) || path === this.layer) return false;
    this.layer = path;
    this.forget();
    this.render();
    this.refresh();
    return true;
  }

  private forget(): void {
    this.heat = undefined;
    this.error = undefined;
  }

  private convLayers(): string[] {
    const maps = new Set(this.result?.layers.filter((l) => l.kind === 'map').map((l) => l.path) ?? []);
    const onnx = this.summary?.format === 'onnx';
    return (this.summary?.layers ?? []).filter((r) => (onnx || /Conv/.test(r.className)) && maps.has(r.path)).map((r) => r.path);
  }

  /** What the tab computes for this model. */
  private method(): 'Grad-CAM' | 'Score-CAM' {
    return this.summary?.format === 'onnx' ? 'Score-CAM' : 'Grad-CAM';
  }

  private render(): void {
    clear(this.element);
    if (!this.summary || (this.summary.format !== 'layers' && this.summary.format !== 'onnx')) {
      this.element.append(h('p', { class: 'empty' }, 'Grad-CAM needs a layers model (or an ONNX model, for Score-CAM) and an input image.'));
      return;
    }
    const method = this.method();
    const what = method === 'Score-CAM' ? 'node' : 'layer';
    if (!this.result) {
      this.element.append(h('p', { class: 'empty' }, `No image yet: ${method} shows where a ${method === 'Score-CAM' ? 'node' : 'conv layer'} looked for a class in it.`));
      return;
    }
    const convs = this.convLayers();
    if (convs.length === 0) {
      this.element.append(h('p', { class: 'empty' }, `This model has no ${method === 'Score-CAM' ? 'node' : 'convolution layer'} with a spatial output.`));
      return;
    }
    const labels = this.summary.labels ?? [];
    const outputs = Number(this.summary.outputShape[this.summary.outputShape.length - 1] ?? 0);
    const classes = Array.from({ length: outputs }, (_, i) => ({ value: String(i), label: labels[i] ?? `class ${i}` }));
    const slider = h('input', { type: 'range', min: 0, max: 100, value: Math.round(this.alpha * 100), 'aria-label': 'Heatmap opacity' });
    const canvas = h('canvas', { width: this.result.input.width, height: this.result.input.height, class: 'gradcam-canvas', role: 'img', 'aria-label': `${method} heatmap over the input` });
    slider.addEventListener('input', () => {
      this.alpha = Number((slider as HTMLInputElement).value) / 100;
      this.draw(canvas);
    });
    const status = this.running
      ? progressRing(`Computing ${method} of ${this.running}…${method === 'Score-CAM' ? ' (one run of the model per channel)' : ''}`)
      : this.error
        ? h('p', { class: 'error' }, this.error)
        : this.heat
          ? h(
              'p',
              { class: 'muted gradcam-caption' },
              this.heat.method === 'score-cam'
                ? `Score-CAM of “${this.heat.label}” at ${this.heat.layerPath} (its ${this.heat.channels ?? '?'} strongest channels, one masked run each): bright is where the class score holds up best.`
                : `Where ${this.heat.layerPath} looked for “${this.heat.label}”: bright is where the class score rises most.`,
            )
          : null;
    this.element.append(
      h(
        'div',
        { class: 'maps-tools' },
        h('label', { class: 'field' }, `${what} `, dropdown(method === 'Score-CAM' ? 'Node' : 'Layer', convs.map((c) => ({ value: c, label: c })), this.layer ?? convs[0], (v) => {
          this.layer = v;
          this.forget();
          this.render();
          this.refresh();
        })),
        h('label', { class: 'field' }, 'class ', dropdown('Class', classes, String(this.classIndex), (v) => {
          this.classIndex = Number(v);
          this.forget();
          this.render();
          this.refresh();
        })),
        h('label', { class: 'field' }, 'opacity ', slider),
      ),
      h('div', { class: 'gradcam-body' }, canvas, this.scale()),
      h('div', { class: 'gradcam-status', 'aria-live': 'polite' }, status),
    );
    this.draw(canvas);
  }

  /** The colour scale: low to high heat, as the overlay draws it. */
  private scale(): HTMLElement {
    const steps = 128;
    const bar = h('canvas', { width: 12, height: steps, class: 'gradcam-scale', role: 'img', 'aria-label': `Colour scale: ${colormap}, dark is low, bright is high` });
    const ctx = bar.getContext('2d');
    if (ctx) {
      const lut = colormapLut(colormap);
      const img = ctx.createImageData(12, steps);
      for (let y = 0; y < steps; y++) {
        const t = Math.round(((steps - 1 - y) / (steps - 1)) * 255);
        for (let x = 0; x < 12; x++) {
          const o = (y * 12 + x) * 4;
          img.data[o] = lut[t * 3];
          img.data[o + 1] = lut[t * 3 + 1];
          img.data[o + 2] = lut[t * 3 + 2];
          img.data[o + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
    }
    return h('div', { class: 'gradcam-legend' }, h('span', {}, 'high'), bar, h('span', {}, 'low'));
  }

  /** Computes the heatmap when the tab shows and none is there for the current layer, class and image. */
  private refresh(): void {
    if (!this.visible || !this.result || !this.layer || this.heat || this.error || this.running) return;
    void this.run(this.layer, this.classIndex);
  }

  private async run(layer: string, classIndex: number): Promise<void> {
    const seq = ++this.seq;
    const result = this.result;
    this.running = layer;
    this.render();
    try {
      const heat = await this.compute(layer, classIndex);
      if (seq !== this.seq) return;
      if (layer === this.layer && classIndex === this.classIndex && result === this.result) this.heat = heat;
    } catch (e) {
      if (seq !== this.seq) return;
      this.error = e instanceof Error ? e.message : String(e);
    }
    this.running = undefined;
    this.render();
    // The layer or class changed while this one computed: compute the one now chosen.
    this.refresh();
  }

  private draw(canvas: HTMLCanvasElement): void {
    const r = this.result;
    const ctx = canvas.getContext('2d');
    if (!r || !ctx) return;
    const img = ctx.createImageData(r.input.width, r.input.height);
    const heat = this.heat && this.heat.width === r.input.width && this.heat.height === r.input.height ? this.heat : undefined;
    const lut = colormapLut(colormap);
    for (let i = 0, j = 0, p = 0; i < r.input.rgb.length; i += 3, j += 4, p++) {
      let [R, G, B] = [r.input.rgb[i], r.input.rgb[i + 1], r.input.rgb[i + 2]];
      if (heat) {
        // A grey, slightly darkened image under the heat, which covers it in proportion to its strength.
        const grey = 0.75 * (0.299 * R + 0.587 * G + 0.114 * B);
        const t = heat.heat[p];
        const a = this.alpha * (0.35 + 0.65 * (t / 255));
        R = (1 - a) * grey + a * lut[t * 3];
        G = (1 - a) * grey + a * lut[t * 3 + 1];
        B = (1 - a) * grey + a * lut[t * 3 + 2];
      }
      img.data[j] = R;
      img.data[j + 1] = G;
      img.data[j + 2] = B;
      img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
}
