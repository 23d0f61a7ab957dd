/**
 * The only place that knows the component library. The card asks for
 * @vscode/webview-ui-toolkit (archived in January 2025); swapping it for its
 * maintained successor @vscode-elements/elements means changing this file.
 */
import {
  provideVSCodeDesignSystem,
  vsCodeButton,
  vsCodeCheckbox,
  vsCodeDropdown,
  vsCodeOption,
  vsCodeProgressRing,
  vsCodeTextField,
} from '@vscode/webview-ui-toolkit';
import { h } from '../dom';

export function registerComponents(): void {
  provideVSCodeDesignSystem().register(
    vsCodeButton(),
    vsCodeCheckbox(),
    vsCodeDropdown(),
    vsCodeOption(),
    vsCodeProgressRing(),
    vsCodeTextField(),
  );
}

export function button(label: string, onClick: () => void, opts: { secondary?: boolean; title?: string; icon?: boolean } = {}): HTMLElement {
  const b = h('vscode-button', { appearance: opts.icon ? 'icon' : opts.secondary ? 'secondary' : 'primary', title: opts.title, 'aria-label': opts.title ?? label }, label);
  b.addEventListener('click', onClick);
  return b;
}

export function dropdown<T extends string>(label: string, options: { value: T; label: string }[], value: T, onChange: (v: T) => void): HTMLElement {
  const d = h('vscode-dropdown', { 'aria-label': label, title: label });
  for (const o of options) {
    const opt = h('vscode-option', { value: o.value }, o.label);
    if (o.value === value) opt.setAttribute('selected', '');
    d.append(opt);
  }
  d.addEventListener('change', () => onChange((d as unknown as { value: T }).value));
  return d;
}

export function setDropdown(d: HTMLElement, value: string): void {
  (d as unknown as { value: string }).value = value;
}

/*
 * The toolkit's checkbox and text field name themselves after their text
 * content when they connect, and otherwise overwrite any aria-label with
 * "Checkbox" or "Text field". So the accessible name is given as text
 * content, and the class quiet-label hides that text where the design has no
 * visible label (inspector.css).
 */

export function checkbox(label: string, checked: boolean, onChange: (checked: boolean) => void): HTMLElement {
  const c = h('vscode-checkbox', { class: 'quiet-label', title: label, checked: checked || undefined }, label);
  (c as unknown as { checked: boolean }).checked = checked;
  c.addEventListener('change', () => onChange((c as unknown as { checked: boolean }).checked));
  return c;
}

/** A text field whose accessible name is `label` (the placeholder goes when the user types). */
export function textField(label: string, placeholder: string, onInput: (v: string) => void): HTMLElement {
  const t = h('vscode-text-field', { class: 'quiet-label', placeholder, title: placeholder }, label);
  t.addEventListener('input', () => onInput((t as unknown as { value: string }).value));
  return t;
}

export function progressRing(label: string): HTMLElement {
  return h('span', { class: 'busy', role: 'status' }, h('vscode-progress-ring', { 'aria-label': label }), h('span', {}, label));
}

/** A badge drawn with a span: the toolkit's vscode-badge sets its colours through an inline style attribute, which the CSP blocks. */
export function badge(text: string): HTMLElement {
  return h('span', { class: 'badge' }, text);
}

export interface Tabs {
  element: HTMLElement;
  views: Record<string, HTMLElement>;
  select(id: string): void;
}

/**
 * Tabs drawn with plain elements and the ARIA tab pattern. The toolkit's
 * vscode-panels positions its active indicator with inline style attributes,
 * which the inspector's CSP (no 'unsafe-inline') rightly blocks.
 */
export function tabs(items: { id: string; label: string }[], onSelect: (id: string) => void): Tabs {
  const list = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Inspector views' });
  const body = h('div', { class: 'tab-views' });
  const views: Record<string, HTMLElement> = {};
  const buttons: Record<string, HTMLElement> = {};
  const select = (id: string, notify: boolean) => {
    for (const t of items) {
      const on = t.id === id;
      buttons[t.id].setAttribute('aria-selected', String(on));
      buttons[t.id].tabIndex = on ? 0 : -1;
      buttons[t.id].classList.toggle('active', on);
      views[t.id].hidden = !on;
    }
    if (notify) onSelect(id);
  };
  items.forEach((t, i) => {
    const b = h('button', { class: 'tab', role: 'tab', id: `tab-${t.id}`, 'aria-controls': `view-${t.id}` }, t.label);
    b.addEventListener('click', () => select(t.id, true));
    b.addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
      const next = items[(i + (e.key === 'ArrowRight' ? 1 : items.length - 1)) % items.length];
      select(next.id, true);
      buttons[next.id].focus();
    });
    buttons[t.id] = b;
    list.append(b);
    const v = h('div', { class: 'tab-view', role: 'tabpanel', id: `view-${t.id}`, 'aria-labelledby': `tab-${t.id}` });
    views[t.id] = v;
    body.append(v);
  });
  select(items[0].id, false);
  return { element: h('div', { class: 'tabs-wrap' }, list, body), views, select: (id) => select(id, false) };
}
