/**
 * The 3D preview: `<model-viewer auto-rotate camera-controls>` (bundled from npm, three.js
 * inside; nothing is fetched from a CDN), and the GLB download.
 */
import '@google/model-viewer';

/** The few members of `<model-viewer>` the page uses. */
interface ModelViewerElement extends HTMLElement {
  src: string | null;
  loaded: boolean;
}

export class Viewer {
  private current: string | null = null;

  constructor(
    private readonly el: ModelViewerElement,
    private readonly status: HTMLElement,
    private readonly download: HTMLButtonElement,
  ) {
    el.addEventListener('load', () => {
      el.dataset['loaded'] = 'true';
      // How many models this viewer has loaded (tests wait for the next one).
      el.dataset['loads'] = String(Number(el.dataset['loads'] ?? '0') + 1);
      this.status.textContent = 'Model loaded: drag to turn it, scroll or pinch to zoom.';
    });
    el.addEventListener('error', (e) => {
      el.dataset['loaded'] = 'error';
      const detail = (e as unknown as CustomEvent<{ sourceError?: unknown } | undefined>).detail;
      this.status.textContent = `The viewer could not load the model (${String(detail?.sourceError ?? 'unknown error')}).`;
    });
    download.addEventListener('click', () => void this.save());
  }

  /** Shows the model at `url` (a GLB). */
  show(url: string): void {
    this.current = url;
    this.el.dataset['loaded'] = 'false';
    this.el.hidden = false;
    this.status.textContent = 'Loading the model…';
    this.el.src = url;
    this.download.disabled = false;
  }

  /** Downloads the shown model as `model.glb` (fetched, so it works across origins). */
  private async save(): Promise<void> {
    if (!this.current) return;
    try {
      const resp = await fetch(this.current);
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const blob = await resp.blob();
      const href = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = href;
      a.download = this.current.split('/').pop() || 'model.glb';
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10_000);
    } catch (e) {
      this.status.textContent = `Download failed: ${String(e)}`;
    }
  }
}
