/**
 * The Grad-CAM tab: pick a conv layer (nested backbones included) and a
 * class; the heatmap of where that layer looked for the class is overlaid on
 * the input image.
 */
import type { GradCamResult, InspectResult } from '../src/protocol/inspect';
import type { ModelSummary } from '../src/protocol/model';
import { colormapLut } from '../src/protocol/colormap';
import { button, dropdown, progressRing } from './components/toolkit';
import { clear, h } from './dom';

export class GradCamView {
  readonly element = h('div', { class: 'gradcam' });
  private summary: ModelSummary | null = null;
  private result: InspectResult | null = null;
  private layer: string | undefined;
  private classIndex = 0;
  private heat: GradCamResult | undefined;
  private alpha = 0.5;

  constructor(private readonly compute: (layerPath: string, classIndex: number) => Promise<GradCamResult>) {
    this.render();
  }

  setModel(summary: ModelSummary | null, result: InspectResult | null): void {
    const changed = summary?.modelPath !== this.summary?.modelPath || result !== this.result;
    this.summary = summary;
    this.result = result;
    if (changed) this.heat = undefined;
    const convs = this.convLayers();
    if (!this.layer || !convs.includes(this.layer)) this.layer = convs[convs.length - 1];
    if (result?.predictions[0]) this.classIndex = result.predictions[0].index;
    this.render();
  }

  private convLayers(): string[] {
    const maps = new Set(this.result?.layers.filter((l) => l.kind === 'map').map((l) => l.path) ?? []);
    return (this.summary?.layers ?? []).filter((r) => /Conv/.test(r.className) && maps.has(r.path)).map((r) => r.path);
  }

  private render(): void {
    clear(this.element);
    if (!this.summary || this.summary.format !== 'layers') {
      this.element.append(h('p', { class: 'empty' }, 'Grad-CAM needs a layers model and an input image.'));
      return;
    }
    if (!this.result) {
      this.element.append(h('p', { class: 'empty' }, 'Pick an image first; Grad-CAM shows where a conv layer looked for a class.'));
      return;
    }
    const convs = this.convLayers();
    if (convs.length === 0) {
      this.element.append(h('p', { class: 'empty' }, 'This model has no convolution layer with a spatial output.'));
      return;
    }
    const labels = this.summary.labels ?? [];
    const outputs = Number(this.summary.outputShape[this.summary.outputShape.length - 1] ?? 0);
    const classes = Array.from({ length: outputs }, (_, i) => ({ value: String(i), label: labels[i] ?? `class ${i}` }));
    const slider = h('input', { type: 'range', min: 0, max: 100, value: Math.round(this.alpha * 100), 'aria-label': 'Heatmap opacity' });
    const canvas = h('canvas', { width: this.result.input.width, height: this.result.input.height, class: 'gradcam-canvas', role: 'img', 'aria-label': 'Grad-CAM heatmap over the input' });
    slider.addEventListener('input', () => {
      this.alpha = Number((slider as HTMLInputElement).value) / 100;
      this.draw(canvas);
    });
    this.element.append(
      h(
        'div',
        { class: 'maps-header' },
        dropdown('Layer', convs.map((c) => ({ value: c, label: c })), this.layer ?? convs[0], (v) => {
          this.layer = v;
          this.heat = undefined;
        }),
        dropdown('Class', classes, String(this.classIndex), (v) => {
          this.classIndex = Number(v);
          this.heat = undefined;
        }),
        button('Compute', () => void this.run()),
        h('label', {}, 'opacity ', slider),
      ),
      canvas,
      this.heat ? h('p', { class: 'muted' }, `Grad-CAM of “${this.heat.label}” at ${this.heat.layerPath}`) : h('p', { class: 'muted' }, 'Choose a layer and a class, then Compute.'),
    );
    this.draw(canvas);
  }

  private async run(): Promise<void> {
    if (!this.layer) return;
    this.element.append(progressRing('Computing Grad-CAM…'));
    try {
      this.heat = await this.compute(this.layer, this.classIndex);
      this.render();
    } catch (e) {
      this.render();
      this.element.append(h('p', { class: 'error' }, e instanceof Error ? e.message : String(e)));
    }
  }

  private draw(canvas: HTMLCanvasElement): void {
    const r = this.result;
    const ctx = canvas.getContext('2d');
    if (!r || !ctx) return;
    const img = ctx.createImageData(r.input.width, r.input.height);
    const heat = this.heat;
    const lut = colormapLut('magma');
    for (let i = 0, j = 0, p = 0; i < r.input.rgb.length; i += 3, j += 4, p++) {
      let [R, G, B] = [r.input.rgb[i], r.input.rgb[i + 1], r.input.rgb[i + 2]];
      if (heat && heat.width === r.input.width && heat.height === r.input.height) {
        const t = heat.heat[p];
        const a = this.alpha;
        R = (1 - a) * R + a * lut[t * 3];
        G = (1 - a) * G + a * lut[t * 3 + 1];
        B = (1 - a) * B + a * lut[t * 3 + 2];
      }
      img.data[j] = R;
      img.data[j + 1] = G;
      img.data[j + 2] = B;
      img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
}
