/**
 * The playground page (docs/playground.md): wires the forms to the worker's API (api.ts),
 * Supabase (session.ts), live progress (progress.ts) and the 3D viewer (viewer.ts).
 */
import { Api, ApiError, newTaskId, type PlaygroundConfig, type StatusResponse, type Step, type SubmitResponse } from './api';
import { watchStep } from './progress';
import { Session } from './session';
import { Viewer } from './viewer';

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

function showMessage(el: HTMLElement, text: string | null): void {
  el.textContent = text ?? '';
  el.hidden = !text;
}

function describe(e: unknown): string {
  if (e instanceof ApiError) return e.describe();
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The value of a text field, or undefined when it is empty. */
function optional(id: string): string | undefined {
  const v = $<HTMLInputElement>(id).value.trim();
  return v === '' ? undefined : v;
}

function checked(name: string): string {
  return document.querySelector<HTMLInputElement>(`input[name="${name}"]:checked`)?.value ?? '';
}

class Page {
  private session: Session | null = null;
  private readonly api: Api;
  private readonly viewer: Viewer;
  private busy = false;
  /** The workflow whose steps the progress list shows. */
  private taskId: string | null = null;
  private chosenConcept: string | null = null;
  /** The concepts task has a complete model, so it can be refined. */
  private draftReady = false;
  private conceptsTask: string | null = null;
  private run: AbortController | null = null;

  constructor(private readonly cfg: PlaygroundConfig | null) {
    this.api = new Api(location.origin, () => this.session?.token() ?? Promise.resolve(null));
    this.viewer = new Viewer($('viewer'), $('viewer-status'), $<HTMLButtonElement>('download'));
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    if (cfg?.local_only) {
      showMessage(
        $('mode'),
        'This worker runs with AUTH_MODE=none: it checks no token and every caller is the same local user. ' +
          'For local development only. Uploads still need a Supabase session or a pasted token.',
      );
    }
    $<HTMLInputElement>('bucket').value = cfg?.input_bucket ?? 'user_input_files_bucket';
    if (cfg) {
      if (!cfg.supabase_anon_key) {
        showMessage(
          $('config-error'),
          'The worker has no SUPABASE_ANON_KEY, so this page can neither sign in nor upload. A pasted token still works for text-to-model.',
        );
      }
      this.session = new Session(cfg.supabase_url, cfg.supabase_anon_key);
      this.session.onChange(() => void this.renderWho());
    }
    this.wire();
    await this.renderWho();
  }

  private wire(): void {
    $('signin-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.account(() =>
        this.needSession().signInWithPassword($<HTMLInputElement>('email').value, $<HTMLInputElement>('password').value),
      );
    });
    $('signin-anon').addEventListener('click', () => void this.account(() => this.needSession().signInAnonymously()));
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.account(async () => {
        this.needSession().usePastedToken($<HTMLTextAreaElement>('token').value);
        $<HTMLTextAreaElement>('token').value = '';
      });
    });
    $('signout').addEventListener('click', () => void this.account(() => this.needSession().signOut()));
    $<HTMLInputElement>('file').addEventListener('change', () => this.preview());
    $('upload-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.upload();
    });
    $('concepts-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.flowConcepts();
    });
    $('run-concept-model').addEventListener('click', () => void this.flowConceptModel());
    $('run-refine').addEventListener('click', () => void this.flowRefine());
    $('direct-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.flowDirect();
    });
    $('text-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.flowText();
    });
  }

  private needSession(): Session {
    if (!this.session) throw new Error('The page has no configuration (see the error above).');
    return this.session;
  }

  private async account(action: () => Promise<void>): Promise<void> {
    showMessage($('account-error'), null);
    try {
      await action();
    } catch (e) {
      showMessage($('account-error'), describe(e));
    }
    await this.renderWho();
  }

  private async renderWho(): Promise<void> {
    const who = await this.session?.identity();
    const expiry = who?.expiresAt ? `, token valid until ${new Date(who.expiresAt * 1000).toLocaleString()}` : '';
    $('who').textContent = who
      ? `Signed in as ${who.label} (user id ${who.userId}${expiry}).`
      : this.cfg?.local_only
        ? 'Not signed in (the worker does not need a token with AUTH_MODE=none).'
        : 'Not signed in.';
    $('signout').hidden = !who;
  }

  private preview(): void {
    const file = $<HTMLInputElement>('file').files?.[0];
    const img = $<HTMLImageElement>('input-preview');
    if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    if (file) {
      img.src = URL.createObjectURL(file);
      img.hidden = false;
    } else {
      img.hidden = true;
    }
  }

  private async upload(): Promise<void> {
    const status = $('upload-status');
    const file = $<HTMLInputElement>('file').files?.[0];
    if (!file) {
      status.textContent = 'Choose an image file first.';
      return;
    }
    if (this.cfg && file.size > this.cfg.max_input_bytes) {
      status.textContent = `The file is larger than the worker accepts (${this.cfg.max_input_bytes} bytes).`;
      return;
    }
    try {
      const session = this.needSession();
      const who = await session.identity();
      if (!who) throw new Error('Sign in or paste a token first: uploads go to your own folder.');
      status.textContent = 'Uploading…';
      const kind = checked('kind') === 'sketch' ? 'sketch' : 'photo';
      const url = await session.upload($<HTMLInputElement>('bucket').value.trim(), who.userId, kind, file);
      $<HTMLInputElement>('input-url').value = url;
      const direct = document.querySelector<HTMLInputElement>(`input[name="direct-kind"][value="${kind}"]`);
      if (direct) direct.checked = true;
      status.textContent = `Uploaded (${file.size} bytes).`;
    } catch (e) {
      status.textContent = describe(e);
    }
  }

  private inputUrl(): string {
    const url = $<HTMLInputElement>('input-url').value.trim();
    if (!url) throw new Error('Upload an image first (or paste a Storage URL into "Input URL").');
    return url;
  }

  // ------------------------------------------------------------------------------------------
  // Flows
  // ------------------------------------------------------------------------------------------

  private async flowConcepts(): Promise<void> {
    await this.guard(async (signal) => {
      const url = this.inputUrl();
      const taskId = this.newTask();
      this.conceptsTask = taskId;
      this.chosenConcept = null;
      this.draftReady = false;
      $('concepts').replaceChildren();
      const nText = $<HTMLInputElement>('concept-n').value.trim();
      const background = $<HTMLSelectElement>('concept-background').value;
      const final = await this.step(taskId, 'concepts', signal, () =>
        this.api.submit('image-to-image', {
          task_id: taskId,
          input_image_asset_url: url,
          prompt: $<HTMLInputElement>('concept-prompt').value.trim(),
          ...(optional('concept-style') ? { style: optional('concept-style') } : {}),
          ...(nText !== '' ? { n: Number(nText) } : {}),
          ...(background === 'auto' || background === 'transparent' || background === 'opaque' ? { background } : {}),
        }),
      );
      if (final?.status === 'complete') this.renderConcepts(final.asset_urls);
    });
  }

  private renderConcepts(urls: string[]): void {
    const box = $('concepts');
    box.replaceChildren();
    urls.forEach((url, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('aria-pressed', 'false');
      b.dataset['url'] = url;
      const img = document.createElement('img');
      img.src = url;
      img.alt = `Concept ${i + 1}`;
      b.append(img);
      b.addEventListener('click', () => {
        for (const other of box.querySelectorAll('button')) other.setAttribute('aria-pressed', 'false');
        b.setAttribute('aria-pressed', 'true');
        this.chosenConcept = url;
        $<HTMLButtonElement>('run-concept-model').disabled = this.busy;
      });
      box.append(b);
    });
    const first = box.querySelector('button');
    first?.focus();
  }

  private async flowConceptModel(): Promise<void> {
    await this.guard(async (signal) => {
      const taskId = this.conceptsTask;
      const url = this.chosenConcept;
      if (!taskId || !url) throw new Error('Make concepts and choose one first.');
      this.showTask(taskId);
      const rowId = await this.session?.conceptRowId(taskId, url);
      const final = await this.step(taskId, 'model', signal, () =>
        this.api.submit('image-to-model', {
          task_id: taskId,
          input_image_asset_urls: [url],
          ...(rowId ? { source_concept_image_id: rowId } : {}),
        }),
      );
      if (final?.status === 'complete' && final.asset_url) {
        this.viewer.show(final.asset_url);
        this.draftReady = true;
      }
    });
  }

  private async flowRefine(): Promise<void> {
    await this.guard(async (signal) => {
      const taskId = this.conceptsTask;
      if (!taskId) throw new Error('Make a model from a concept first.');
      this.showTask(taskId);
      const draft = await this.session?.draftTripoId(taskId);
      if (!draft) {
        throw new Error(
          "Could not read the model's Tripo task id (models.ai_service_task_id) with your token, so there is nothing to refine.",
        );
      }
      const final = await this.step(taskId, 'refine', signal, () =>
        this.api.submit('refine-model', { task_id: taskId, tripo_draft_task_id: draft }),
      );
      if (final?.status === 'complete' && final.asset_url) this.viewer.show(final.asset_url);
    });
  }

  private async flowDirect(): Promise<void> {
    await this.guard(async (signal) => {
      const url = this.inputUrl();
      const taskId = this.newTask();
      const prompt = optional('direct-prompt');
      const submit = (): Promise<SubmitResponse> =>
        checked('direct-kind') === 'sketch'
          ? this.api.submit('sketch-to-model', {
              task_id: taskId,
              input_sketch_asset_url: url,
              ...(prompt ? { prompt } : {}),
            })
          : this.api.submit('image-to-model', {
              task_id: taskId,
              input_image_asset_urls: [url],
              ...(prompt ? { prompt } : {}),
            });
      const final = await this.step(taskId, 'model', signal, submit);
      if (final?.status === 'complete' && final.asset_url) this.viewer.show(final.asset_url);
    });
  }

  private async flowText(): Promise<void> {
    await this.guard(async (signal) => {
      const taskId = this.newTask();
      const style = optional('text-style');
      const final = await this.step(taskId, 'model', signal, () =>
        this.api.submit('text-to-model', {
          task_id: taskId,
          prompt: $<HTMLInputElement>('text-prompt').value.trim(),
          ...(style ? { style } : {}),
        }),
      );
      if (final?.status === 'complete' && final.asset_url) this.viewer.show(final.asset_url);
    });
  }

  // ------------------------------------------------------------------------------------------
  // Running steps
  // ------------------------------------------------------------------------------------------

  private newTask(): string {
    const id = newTaskId();
    this.showTask(id);
    $('steps').replaceChildren();
    return id;
  }

  private showTask(id: string): void {
    if (this.taskId !== id) $('steps').replaceChildren();
    this.taskId = id;
    $('task-id').textContent = id;
  }

  /** One run at a time: disables the actions, shows any error in words, re-enables them. */
  private async guard(body: (signal: AbortSignal) => Promise<void>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.run = new AbortController();
    showMessage($('error'), null);
    this.setActionsDisabled(true);
    try {
      await body(this.run.signal);
    } catch (e) {
      showMessage($('error'), describe(e));
    } finally {
      this.busy = false;
      this.run = null;
      this.setActionsDisabled(false);
    }
  }

  /** While a step runs every action is off; then each is on when its flow allows it. */
  private setActionsDisabled(disabled: boolean): void {
    for (const b of document.querySelectorAll<HTMLButtonElement>('button.action')) b.disabled = disabled;
    if (!disabled) {
      $<HTMLButtonElement>('run-concept-model').disabled = !this.chosenConcept;
      $<HTMLButtonElement>('run-refine').disabled = !this.draftReady;
    }
  }

  /** Submits a step and follows it to the end; a refusal or a failure is shown in words. */
  private async step(
    taskId: string,
    step: Step,
    signal: AbortSignal,
    submit: () => Promise<SubmitResponse>,
  ): Promise<StatusResponse | null> {
    const item = this.stepItem(step);
    item.text.textContent = `${step}: submitting…`;
    let submitted: SubmitResponse;
    try {
      submitted = await submit();
    } catch (e) {
      item.li.classList.add('failed');
      item.text.textContent = `${step}: refused`;
      throw e;
    }
    item.text.textContent = `${step}: ${submitted.status}`;
    const final = await watchStep(this.api, taskId, step, (s) => this.renderStep(item, s), signal);
    if (final.status === 'failed') {
      const err = final.error;
      throw new Error(`The ${step} step failed${err ? `: ${err.message} (${err.code})` : '.'}`);
    }
    return final;
  }

  private stepItem(step: Step): { li: HTMLLIElement; text: HTMLSpanElement; bar: HTMLProgressElement } {
    const list = $('steps');
    let li = list.querySelector<HTMLLIElement>(`li[data-step="${step}"]`);
    if (!li) {
      li = document.createElement('li');
      li.dataset['step'] = step;
      const text = document.createElement('span');
      const bar = document.createElement('progress');
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute('aria-label', `${step} progress`);
      li.append(text, bar);
      list.append(li);
    }
    li.classList.remove('failed');
    li.dataset['status'] = 'pending';
    const text = li.querySelector('span');
    const bar = li.querySelector('progress');
    if (!text || !bar) throw new Error('broken progress item');
    return { li, text, bar };
  }

  private renderStep(item: { li: HTMLLIElement; text: HTMLSpanElement; bar: HTMLProgressElement }, s: StatusResponse): void {
    item.li.dataset['status'] = s.status;
    item.bar.value = s.progress;
    item.text.textContent = `${s.step} (${s.service}): ${s.status}, ${s.progress}%`;
    item.li.classList.toggle('failed', s.status === 'failed');
  }
}

async function main(): Promise<void> {
  let cfg: PlaygroundConfig | null = null;
  try {
    cfg = await new Api(location.origin, async () => null).config();
  } catch (e) {
    showMessage($('config-error'), `The worker's configuration could not be read: ${describe(e)}`);
  }
  const page = new Page(cfg);
  await page.start();
  document.body.dataset['ready'] = 'true';
}

void main();
