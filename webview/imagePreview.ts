/**
 * Showing an image the user clicked (a latent point, a misclassified
 * validation image, the input) without splitting the inspector: the host
 * opens it in another editor group when there is one; otherwise it is shown
 * here, over the panel, until Escape, a click or Close.
 */
import { button } from './components/toolkit';
import { h } from './dom';
import { host } from './host';

let open: HTMLElement | undefined;

function close(): void {
  open?.remove();
  open = undefined;
}

/** Opens `path` in another editor group, or previews it in the panel. */
export async function showImage(path: string): Promise<void> {
  const how = await host.call('openImage', { path });
  if (how !== 'preview') return;
  const url = await host.call('imageThumbnail', { path, size: 640 });
  close();
  const name = path.split(/[\\/]/).slice(-2).join('/');
  const img = h('img', { src: url, alt: name, class: 'image-preview-img' });
  const closeButton = button('Close', close, { secondary: true, title: 'Close the preview (Escape)' });
  open = h(
    'div',
    { class: 'image-preview', role: 'dialog', 'aria-label': `Image ${name}`, tabindex: -1 },
    h('div', { class: 'image-preview-box' }, h('div', { class: 'image-preview-bar' }, h('span', { class: 'image-preview-name', title: path }, name), closeButton), img),
  );
  open.addEventListener('click', (e) => {
    if (e.target === open) close();
  });
  open.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      close();
    }
  });
  document.body.append(open);
  open.focus();
}
