/**
 * A complete MakeIt3D client of makeit3d-bff, written for the browser (or any runtime with
 * `fetch` and streams: Node 22 runs it as it is): `@supabase/supabase-js` for sign-in, Storage
 * uploads and the tables, `fetch` for the worker's API. It never polls: it follows a step on the
 * task's events stream (Server-Sent Events read with `fetch`, so the token goes in a header),
 * reconnects with back-off and `Last-Event-ID`, and reads the status endpoint only when a
 * reconnect fails. It is type-checked by `scripts/test.sh` (`tsc -p docs/examples`, strict,
 * erasable syntax only) and run against the local stack by the end-to-end suite
 * (`tests/e2e/tests/client.rs`), so it follows the API as documented in docs/api.md and
 * docs/client-guide.md.
 *
 *   const app = new MakeIt3D({ bffUrl, supabaseUrl, supabaseAnonKey, inputBucket });
 *   await app.supabase.auth.signInWithPassword({ email, password });
 *   const a = await flowA(app, { kind: 'image', images: [file] }, { onProgress: render, onTaskId: remember });
 *   const b = await flowB(app, file, 'a cute vinyl toy', async (c) => c[0]!, { concepts: { n: 3 } });
 *   const again = await resume(app, rememberedTaskId, { onProgress: render });   // after a reload
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js';

// -------------------------------------------------------------------------------------------
// The API's types (docs/api.md)
// -------------------------------------------------------------------------------------------

export type Step = 'concepts' | 'model' | 'refine';
export type Service = 'openai' | 'tripoai';
export type Status = 'pending' | 'processing' | 'complete' | 'failed';

/** Answer of every `POST /generate/*`: 202 for a new step, 200 for the same request again. */
export interface SubmitResponse {
  task_id: string;
  step: Step;
  status: Status;
  /** `/tasks/{task_id}/status?step={step}`, relative to the worker's URL. */
  status_url: string;
  /** Deprecated: equals `task_id`. */
  celery_task_id: string;
}

/** Why a step failed (`error.code` values are listed in docs/api.md). */
export interface StepError {
  code: string;
  message: string;
}

export interface StepStatus {
  step: Step;
  service: Service;
  status: Status;
  /** 0–100. */
  progress: number;
  asset_url: string | null;
  asset_urls: string[];
  error: StepError | null;
  /** Only while the step waits for a provider slot (`pending`): its place in line, 1 = first. */
  queue_position?: number;
}

/** Answer of `GET /tasks/{task_id}/status`. */
export interface StatusResponse extends StepStatus {
  task_id: string;
  /** RFC 3339 UTC with milliseconds: when the selected step last changed. */
  updated_at: string;
  steps: StepStatus[];
}

export type ApiErrorCode =
  | 'malformed_json'
  | 'unauthorized'
  | 'anonymous_not_allowed'
  | 'not_found'
  | 'upgrade_required'
  | 'method_not_allowed'
  | 'task_conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'validation_error'
  | 'input_asset_not_found'
  | 'rate_limited'
  | 'misconfigured'
  | 'dependency_failed'
  | 'dependency_unavailable'
  | 'internal_error';

/** One entry of `details`: a field problem (422), or the per-user limit that refused a submit (429). */
export type ErrorDetail =
  | { field: string; message: string }
  | { limit: 'submits_per_minute' | 'active_steps' | 'submit_requests_per_minute'; max?: number; message: string };

export interface ApiErrorBody {
  error: {
    code: ApiErrorCode;
    message: string;
    details?: ErrorDetail[];
  };
}

export type ModelVersion =
  | 'P1-20260311'
  | 'v3.1-20260211'
  | 'v3.0-20250812'
  | 'v2.5-20250123'
  | 'v2.0-20240919'
  | 'Turbo-v1.0-20250506'
  | 'v1.4-20240625'
  | 'v1.3-20240522';

/** The Tripo options shared by the model endpoints. */
export interface ModelOptions {
  style?: string;
  texture?: boolean;
  pbr?: boolean;
  model_version?: ModelVersion;
  face_limit?: number;
  auto_size?: boolean;
  texture_quality?: 'standard' | 'detailed';
}

/** The options of `image-to-image` (absent: the API's defaults — `n` 1, OpenAI's background). */
export interface ConceptOptions {
  style?: string;
  /** 1–10 images (default 1). */
  n?: number;
  background?: 'transparent' | 'opaque' | 'auto';
}

/** Fields every generation endpoint accepts. */
interface Common {
  task_id: string;
  /** Where the worker POSTs the step's final status view, signed (docs/api.md § Webhooks). */
  webhook_url?: string;
}

export interface ImageToImageRequest extends Common, ConceptOptions {
  input_image_asset_url: string;
  prompt: string;
}

/** Text has no input image: `text-to-model` takes no `source_input_asset_id` (422 if sent). */
export interface TextToModelRequest extends Common, ModelOptions {
  prompt: string;
}

/** The options of the image and sketch endpoints. */
export interface ImageModelOptions extends ModelOptions {
  orientation?: 'default' | 'align_image';
}

interface ImageModelFields extends Common, ImageModelOptions {
  prompt?: string;
  source_concept_image_id?: string;
  /** The `input_assets` row of the uploaded input (image and sketch endpoints only). */
  source_input_asset_id?: string;
}

export interface ImageToModelRequest extends ImageModelFields {
  /** 1 image, or 2–4 views in the order front, left, back, right. */
  input_image_asset_urls: string[];
}

export interface SketchToModelRequest extends ImageModelFields {
  input_sketch_asset_url: string;
}

export interface RefineModelRequest extends Common, ModelOptions {
  /** The Tripo task id of the draft: `models.ai_service_task_id` of the draft's row. */
  tripo_draft_task_id: string;
  prompt?: string;
  input_model_asset_url?: string;
}

/** A non-2xx answer of the worker. */
export class BffError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode | 'network_error';
  readonly details: ErrorDetail[];
  /** `Retry-After` of a 429 (seconds): a per-user limit; nothing was created. */
  readonly retryAfterS: number | undefined;

  constructor(
    status: number,
    code: ApiErrorCode | 'network_error',
    message: string,
    details: ErrorDetail[] = [],
    retryAfterS?: number,
  ) {
    super(message);
    this.name = 'BffError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterS = retryAfterS;
  }

  /** Worth sending the same request again later (nothing was left half-made). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 502 || this.status === 503;
  }
}

/** A step that ended `failed` (`error.code === 'cancelled'` after a cancel). */
export class StepFailedError extends Error {
  readonly step: Step;
  readonly error: StepError;
  /** The final view. */
  readonly status: StatusResponse | undefined;

  constructor(step: Step, error: StepError, status?: StatusResponse) {
    super(`${step} failed: ${error.code}: ${error.message}`);
    this.name = 'StepFailedError';
    this.step = step;
    this.error = error;
    this.status = status;
  }
}

// -------------------------------------------------------------------------------------------
// The tables the client reads (migrations/0001_init.sql)
// -------------------------------------------------------------------------------------------

export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[];

// A type alias, not an interface: supabase-js needs rows assignable to Record<string, unknown>.
export type InputAssetRow = {
  id: string;
  task_id: string;
  user_id: string | null;
  prompt: string | null;
  style: string | null;
  input_asset_type: string;
  asset_url: string | null;
  status: string;
  created_at: string;
  updated_at: string;
  metadata: Json | null;
};

export type ConceptImageRow = {
  id: string;
  task_id: string;
  user_id: string | null;
  source_input_asset_id: string | null;
  prompt: string;
  style: string | null;
  asset_url: string | null;
  status: Status;
  ai_service_task_id: string | null;
  created_at: string;
  updated_at: string;
  /** `{step, attempt, n, index, params, error?}`. */
  metadata: Json | null;
};

export type ModelRow = {
  id: string;
  task_id: string;
  user_id: string | null;
  source_input_asset_id: string | null;
  source_concept_image_id: string | null;
  prompt: string | null;
  style: string | null;
  asset_url: string | null;
  status: Status;
  /** The Tripo task id, once the Tripo task exists. */
  ai_service_task_id: string | null;
  created_at: string;
  updated_at: string;
  /** `{step, attempt, kind, params, error?}`. */
  metadata: Json | null;
};

type InputAssetInsert = Pick<InputAssetRow, 'task_id' | 'user_id' | 'input_asset_type'> &
  Partial<Pick<InputAssetRow, 'id' | 'prompt' | 'style' | 'asset_url' | 'status' | 'metadata'>>;

export interface Database {
  public: {
    Tables: {
      input_assets: {
        Row: InputAssetRow;
        Insert: InputAssetInsert;
        Update: Partial<InputAssetInsert>;
        Relationships: [];
      };
      concept_images: {
        Row: ConceptImageRow;
        Insert: never;
        Update: never;
        Relationships: [];
      };
      models: {
        Row: ModelRow;
        Insert: never;
        Update: never;
        Relationships: [];
      };
    };
    Views: { [_ in never]: never };
    Functions: { [_ in never]: never };
    Enums: { [_ in never]: never };
    CompositeTypes: { [_ in never]: never };
  };
}

// -------------------------------------------------------------------------------------------
// The client
// -------------------------------------------------------------------------------------------

export interface ClientConfig {
  /** The worker, e.g. `https://makeit3d-bff.example.workers.dev`. */
  bffUrl: string;
  /** The Supabase project the worker is configured with. */
  supabaseUrl: string;
  supabaseAnonKey: string;
  /** A private bucket with the owner-folder policy (`{user_id}/…`), e.g. `user_input_files_bucket`. */
  inputBucket: string;
  /**
   * Where the user's access token comes from. Default: the supabase-js session
   * (`auth.getSession()`, refreshed by supabase-js). Give a function when the app holds the token
   * itself (e.g. a supabase-js client made with the `accessToken` option, whose `auth` is off).
   */
  accessToken?: () => Promise<string | null>;
}

/** What the UI shows while a step runs: every view, as the worker pushes it. */
export type ProgressListener = (status: StatusResponse) => void;

/** A submit's answer, and whether it started something: `created` is `true` for `202` (a new
 * step or a new attempt of a failed one), `false` for `200` (the same request again: nothing new
 * started — also what a retry after a lost answer gets when the first try got through). */
export interface Submitted extends SubmitResponse {
  created: boolean;
}

export interface FollowOptions {
  /** Every view of the step, as pushed (also the first one, at once). */
  onProgress?: ProgressListener;
  /** The last event id seen (e.g. kept across a reload): the stream resumes after it. */
  lastEventId?: number;
  /** Give up after this long (default 35 min: the worker fails a step after 30 min). */
  timeoutMs?: number;
  /** Stop following (the user left the page). */
  signal?: AbortSignal;
}

/** The most inputs `image-to-model` takes: front, left, back, right. */
export const MAX_VIEWS = 4;

/** A task id for a new workflow: `task-<ms>-<random>` (any 1–128 of `A-Za-z0-9_.:-` works). */
export function newTaskId(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `task-${Date.now()}-${random[0]!.toString(36)}${random[1]!.toString(36)}`;
}

function abortError(): Error {
  const e = new Error('aborted');
  e.name = 'AbortError';
  return e;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Percent-encodes each segment of a storage path. */
const encodePath = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

/** The `sub` of a JWT (unverified: the worker and Supabase verify it). */
function subOf(token: string): string | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const claims: unknown = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    const sub = typeof claims === 'object' && claims !== null ? (claims as { sub?: unknown }).sub : undefined;
    return typeof sub === 'string' ? sub : null;
  } catch {
    return null;
  }
}

const isFinal = (s: StepStatus): boolean => s.status === 'complete' || s.status === 'failed';

/** One Server-Sent Event. */
interface SseEvent {
  id: number | undefined;
  event: string;
  data: string;
}

/**
 * Reads Server-Sent Events from a response body (the WHATWG framing: `field: value` lines, a
 * blank line ends an event, `:` lines are comments such as the 15 s heartbeat).
 */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let id: number | undefined;
  let event = 'message';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) yield { id, event, data: data.join('\n') };
          event = 'message';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && /^\d+$/.test(value)) id = Number(value);
      }
    }
  } finally {
    // Stops the download when the caller stops reading (the step is final, or aborted).
    await reader.cancel().catch(() => undefined);
  }
}

export class MakeIt3D {
  readonly config: ClientConfig;
  readonly supabase: SupabaseClient<Database>;

  constructor(config: ClientConfig, supabase?: SupabaseClient<Database>) {
    this.config = config;
    this.supabase = supabase ?? createClient<Database>(config.supabaseUrl, config.supabaseAnonKey);
  }

  /** The signed-in user and a fresh access token. */
  private async session(): Promise<{ userId: string; token: string }> {
    if (this.config.accessToken) {
      const token = await this.config.accessToken();
      const userId = token ? subOf(token) : null;
      if (!token || !userId) throw new BffError(401, 'unauthorized', 'sign in first');
      return { userId, token };
    }
    const { data, error } = await this.supabase.auth.getSession();
    if (error || !data.session) {
      throw new BffError(401, 'unauthorized', 'sign in first');
    }
    return { userId: data.session.user.id, token: data.session.access_token };
  }

  /**
   * Uploads one input into the user's own folder and records it in `input_assets`; returns the
   * URL to send to the worker and the row's id. Each upload gets a fresh path
   * (`{user_id}/{task_id}/{uuid}-{name}`) and never overwrites (`upsert: false`), so the Storage
   * policies need only INSERT and SELECT on the user's folder (no UPDATE), and a retried upload
   * cannot replace an input a running job reads.
   */
  async uploadInput(
    taskId: string,
    file: Blob,
    name: string,
    inputAssetType: 'uploaded_photo' | 'uploaded_sketch',
  ): Promise<{ url: string; inputAssetId: string }> {
    const { userId } = await this.session();
    const path = `${userId}/${taskId}/${crypto.randomUUID()}-${name}`;
    const bucket = this.config.inputBucket;
    const upload = await this.supabase.storage
      .from(bucket)
      .upload(path, file, { contentType: file.type || 'image/png', upsert: false });
    if (upload.error) {
      throw new Error(`upload of ${name} failed: ${upload.error.message}`);
    }
    // A private bucket: the authenticated object URL (the worker reads it with the user's token).
    const url = `${this.config.supabaseUrl}/storage/v1/object/authenticated/${encodeURIComponent(bucket)}/${encodePath(path)}`;
    const row = await this.supabase
      .from('input_assets')
      .insert({
        task_id: taskId,
        user_id: userId,
        input_asset_type: inputAssetType,
        asset_url: url,
        status: 'complete',
      })
      .select('id')
      .single();
    if (row.error) {
      throw new Error(`input_assets insert failed: ${row.error.message}`);
    }
    return { url, inputAssetId: row.data.id };
  }

  /** Records a text prompt as the task's input (flow A from text; linked by `task_id` only). */
  async recordPrompt(taskId: string, prompt: string, style?: string): Promise<string> {
    const { userId } = await this.session();
    const row = await this.supabase
      .from('input_assets')
      .insert({
        task_id: taskId,
        user_id: userId,
        input_asset_type: 'text_prompt',
        prompt,
        style: style ?? null,
        status: 'complete',
      })
      .select('id')
      .single();
    if (row.error) {
      throw new Error(`input_assets insert failed: ${row.error.message}`);
    }
    return row.data.id;
  }

  /**
   * `POST /generate/{endpoint}`. Network errors, 429, 502 and 503 are retried with the same body
   * (a repeat of the same request is idempotent: 200 with the step's current status).
   */
  private async submit(endpoint: string, body: object): Promise<Submitted> {
    const delays = [1_000, 3_000, 10_000];
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.submitOnce(endpoint, body);
      } catch (e) {
        if (!(e instanceof BffError) || !e.retryable || attempt >= delays.length) {
          throw e;
        }
        // A per-user limit says when a submit may be accepted again.
        await sleep(Math.max(delays[attempt]!, (e.retryAfterS ?? 0) * 1_000));
      }
    }
  }

  private async submitOnce(endpoint: string, body: object): Promise<Submitted> {
    const { token } = await this.session();
    let res: Response;
    try {
      res = await fetch(`${this.config.bffUrl}/generate/${endpoint}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new BffError(0, 'network_error', String(e));
    }
    const answer = (await this.read(res)) as SubmitResponse;
    return { ...answer, created: res.status === 202 };
  }

  private async read(res: Response): Promise<unknown> {
    const text = await res.text();
    if (res.ok) {
      return JSON.parse(text) as unknown;
    }
    throw errorOf(res, text);
  }

  imageToImage(req: ImageToImageRequest): Promise<Submitted> {
    return this.submit('image-to-image', req);
  }

  textToModel(req: TextToModelRequest): Promise<Submitted> {
    return this.submit('text-to-model', req);
  }

  imageToModel(req: ImageToModelRequest): Promise<Submitted> {
    if (req.input_image_asset_urls.length < 1 || req.input_image_asset_urls.length > MAX_VIEWS) {
      throw new RangeError(
        `image-to-model takes 1 to ${MAX_VIEWS} images (front, left, back, right), not ${req.input_image_asset_urls.length}`,
      );
    }
    return this.submit('image-to-model', req);
  }

  sketchToModel(req: SketchToModelRequest): Promise<Submitted> {
    return this.submit('sketch-to-model', req);
  }

  refineModel(req: RefineModelRequest): Promise<Submitted> {
    return this.submit('refine-model', req);
  }

  /**
   * `GET /tasks/{task_id}/status[?step=…]`: one read of the current view. The client uses it
   * only when a reconnect of the events stream fails.
   */
  async status(taskId: string, step?: Step): Promise<StatusResponse> {
    const { token } = await this.session();
    const query = step ? `?step=${step}` : '';
    let res: Response;
    try {
      res = await fetch(`${this.config.bffUrl}/tasks/${encodeURIComponent(taskId)}/status${query}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
    } catch (e) {
      throw new BffError(0, 'network_error', String(e));
    }
    return (await this.read(res)) as StatusResponse;
  }

  /**
   * `POST /tasks/{task_id}/cancel[?step=…]`: the step (or every unfinished step) becomes `failed`
   * with `error.code === 'cancelled'`; a follower of it gets that view and throws
   * `StepFailedError`. Repeating it is harmless. The provider may still finish (and bill) its
   * own task; the result is discarded.
   */
  async cancel(taskId: string, step?: Step): Promise<StatusResponse> {
    const { token } = await this.session();
    const query = step ? `?step=${step}` : '';
    let res: Response;
    try {
      res = await fetch(`${this.config.bffUrl}/tasks/${encodeURIComponent(taskId)}/cancel${query}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      });
    } catch (e) {
      throw new BffError(0, 'network_error', String(e));
    }
    return (await this.read(res)) as StatusResponse;
  }

  /**
   * Follows a step (or, without `step`, the task's latest step) on `GET /tasks/{id}/events` until
   * it is `complete` (returned) or `failed` (thrown as `StepFailedError`). Never polls: the
   * worker pushes every change. A dropped stream is reopened after 0.5 s, 1 s, 2 s, … (at most
   * 15 s) with `Last-Event-ID`, which resumes without gaps; only when reopening fails is the
   * status endpoint read once (to show something and to notice the end) before the next try.
   */
  async follow(taskId: string, step: Step | undefined, options: FollowOptions = {}): Promise<StatusResponse> {
    const { onProgress = () => {}, signal } = options;
    const deadline = Date.now() + (options.timeoutMs ?? 35 * 60_000);
    let lastEventId = options.lastEventId;
    let last: StatusResponse | undefined;
    const done = (s: StatusResponse): StatusResponse => {
      if (s.status === 'failed') {
        throw new StepFailedError(s.step, s.error ?? { code: 'failed', message: 'failed' }, s);
      }
      return s;
    };
    const query = step ? `?step=${step}` : '';
    for (let failures = 0; ; ) {
      if (signal?.aborted) throw abortError();
      if (Date.now() > deadline) {
        throw new Error(`${step ?? 'the latest step'} of ${taskId} is still running; check again later`);
      }
      let res: Response | undefined;
      try {
        const { token } = await this.session();
        const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
        if (lastEventId !== undefined) headers['Last-Event-ID'] = String(lastEventId);
        res = await fetch(`${this.config.bffUrl}/tasks/${encodeURIComponent(taskId)}/events${query}`, {
          headers,
          ...(signal ? { signal } : {}),
        });
      } catch (e) {
        if (signal?.aborted) throw abortError();
        if (e instanceof BffError) throw e;
        res = undefined;
      }
      if (res?.status === 204) {
        // Up to date and every step final: nothing more will come. The last view is the answer.
        if (last && isFinal(last)) return done(last);
        const s = await this.status(taskId, step);
        onProgress(s);
        return done(s);
      }
      if (res?.ok && res.body) {
        failures = 0;
        try {
          for await (const ev of sseEvents(res.body)) {
            if (ev.event !== 'status') continue;
            if (ev.id !== undefined) lastEventId = ev.id;
            last = JSON.parse(ev.data) as StatusResponse;
            onProgress(last);
            if (isFinal(last)) return done(last);
          }
        } catch (e) {
          if (e instanceof StepFailedError || signal?.aborted) throw signal?.aborted ? abortError() : e;
          // A broken connection: reconnect below.
        }
        // The stream ended before the step did (a restart, a network change): reconnect.
      } else if (res && ![0, 408, 429, 500, 502, 503, 504].includes(res.status)) {
        throw errorOf(res, await res.text()); // 401, 404, 422: reconnecting will not help
      } else {
        failures += 1;
        if (failures >= 2) {
          // Reopening failed again: one status read keeps the view fresh and notices the end.
          try {
            const s = await this.status(taskId, step);
            onProgress(s);
            if (isFinal(s)) return done(s);
          } catch (e) {
            if (!(e instanceof BffError) || !e.retryable) throw e;
          }
        }
      }
      await sleep(Math.min(15_000, 500 * 2 ** failures), signal);
    }
  }

  /** The task's concept rows (RLS: the user's own), in image order, once all are final. */
  async conceptRows(taskId: string): Promise<ConceptImageRow[]> {
    for (let i = 0; i < 10; i++) {
      const { data, error } = await this.supabase
        .from('concept_images')
        .select('*')
        .eq('task_id', taskId);
      if (error) {
        throw new Error(`concept_images: ${error.message}`);
      }
      const rows = [...data].sort((a, b) => indexOf(a) - indexOf(b));
      // Rows follow the task's state within moments of the events.
      if (rows.length > 0 && rows.every((r) => r.status === 'complete' || r.status === 'failed')) {
        return rows;
      }
      await sleep(500);
    }
    throw new Error('the concept rows did not become final');
  }

  /** The model row of a step (`model` or `refine`; RLS: the user's own). */
  async modelRow(taskId: string, step: 'model' | 'refine'): Promise<ModelRow | undefined> {
    const { data, error } = await this.supabase.from('models').select('*').eq('task_id', taskId);
    if (error) {
      throw new Error(`models: ${error.message}`);
    }
    return data.find((r) => stepOf(r) === step);
  }
}

/** The `BffError` of a non-2xx answer. */
function errorOf(res: Response, text: string): BffError {
  let body: ApiErrorBody | undefined;
  try {
    body = JSON.parse(text) as ApiErrorBody;
  } catch {
    body = undefined;
  }
  return new BffError(
    res.status,
    body?.error?.code ?? 'internal_error',
    body?.error?.message ?? (text || res.statusText),
    body?.error?.details ?? [],
    res.status === 429 ? Number(res.headers.get('Retry-After') ?? '') || undefined : undefined,
  );
}

function metadataField(metadata: Json | null, key: string): Json | undefined {
  if (metadata && typeof metadata === 'object' && !Array.isArray(metadata)) {
    return metadata[key];
  }
  return undefined;
}

function indexOf(row: ConceptImageRow): number {
  const index = metadataField(row.metadata, 'index');
  return typeof index === 'number' ? index : 0;
}

function stepOf(row: ModelRow): Step | undefined {
  const step = metadataField(row.metadata, 'step');
  return step === 'model' || step === 'refine' ? step : undefined;
}

// -------------------------------------------------------------------------------------------
// The flows
// -------------------------------------------------------------------------------------------

/** Flow A input: text, one image (or 2–4 views: front, left, back, right), or a sketch. */
export type FlowAInput =
  | { kind: 'text'; prompt: string; style?: string }
  | { kind: 'image'; images: Blob[]; prompt?: string }
  | { kind: 'sketch'; sketch: Blob; prompt?: string };

/** What every flow can be told and tells back. */
export interface FlowOptions {
  /** Every view of the running step. */
  onProgress?: ProgressListener;
  /** The task id, as soon as it exists (before anything is uploaded): keep it (URL, storage) to
   * `resume` after a reload. */
  onTaskId?: (taskId: string) => void;
  /** Each submit's answer: `created` tells a new step (202) from a repeat (200). */
  onSubmitted?: (submitted: Submitted) => void;
  /** The task id to use (default: a new one). */
  taskId?: string;
  /** A webhook for each step (a host in the worker's `WEBHOOK_ALLOWED_HOSTS`). */
  webhookUrl?: string;
  signal?: AbortSignal;
}

export interface FlowAOptions extends FlowOptions {
  /** Tripo options; absent fields take the API's defaults (`texture` true, Tripo's own others). */
  model?: ImageModelOptions;
}

export interface FlowBOptions extends FlowOptions {
  /** `image-to-image` options; absent fields take the API's defaults (`n` 1). */
  concepts?: ConceptOptions;
  /** Tripo options of the model (and the refine's stored options). */
  model?: ImageModelOptions;
  /** Refine the model afterwards. */
  refine?: boolean;
}

/** What the UI shows for a status view. */
export function describe(s: StepStatus): string {
  switch (s.status) {
    case 'pending':
      return s.queue_position ? `Waiting in line (${s.queue_position})…` : 'Queued…';
    case 'processing':
      // Concepts report no progress (0 until done); Tripo steps report 0–99.
      return s.service === 'openai' ? 'Painting concepts…' : `Modelling… ${s.progress}%`;
    case 'complete':
      return 'Done';
    case 'failed':
      return failureMessage(s.error);
  }
}

/** A message for the user, by `error.code` (docs/client-guide.md § Handling failed). */
export function failureMessage(error: StepError | null): string {
  switch (error?.code) {
    case 'cancelled':
      return 'Cancelled.';
    case 'content_policy':
      return 'This image or prompt was refused by the safety filter. Try another one.';
    case 'invalid_input':
      return 'This input could not be used. Try another image or different options.';
    case 'provider_quota':
    case 'provider_auth':
      return 'The service is unavailable right now. Please try again later.';
    default:
      return 'Something went wrong. You can try again.';
  }
}

/** Only the fields that are set (the API refuses nothing for absent ones, and applies its defaults). */
function defined<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function started(options: FlowOptions): string {
  const taskId = options.taskId ?? newTaskId();
  options.onTaskId?.(taskId);
  return taskId;
}

const hook = (options: FlowOptions) => (options.webhookUrl ? { webhook_url: options.webhookUrl } : {});

export interface FlowAResult {
  taskId: string;
  /** The model step's submit answer. */
  submitted: Submitted;
  /** The final view of the model step. */
  model: StatusResponse;
  /** The `.glb` to show (a signed URL for a private bucket). */
  modelUrl: string;
}

/** Flow A: text, image(s) or sketch → a 3D model. */
export async function flowA(app: MakeIt3D, input: FlowAInput, options: FlowAOptions = {}): Promise<FlowAResult> {
  if (input.kind === 'image' && (input.images.length < 1 || input.images.length > MAX_VIEWS)) {
    // Refused before anything is uploaded (the API answers 422 for 5 or more).
    throw new RangeError(`flow A takes 1 to ${MAX_VIEWS} images (front, left, back, right), not ${input.images.length}`);
  }
  const taskId = started(options);
  const model = defined(options.model);
  let submitted: Submitted;
  switch (input.kind) {
    case 'text': {
      // Text has no input image: the `input_assets` row is linked by `task_id` only.
      await app.recordPrompt(taskId, input.prompt, input.style);
      submitted = await app.textToModel({
        task_id: taskId,
        prompt: input.prompt,
        ...(input.style ? { style: input.style } : {}),
        ...defined({ ...model, orientation: undefined }),
        ...hook(options),
      });
      break;
    }
    case 'image': {
      const views = ['front', 'left', 'back', 'right'];
      const uploaded = [];
      for (const [i, image] of input.images.entries()) {
        uploaded.push(await app.uploadInput(taskId, image, `${views[i]}.png`, 'uploaded_photo'));
      }
      submitted = await app.imageToModel({
        task_id: taskId,
        input_image_asset_urls: uploaded.map((u) => u.url),
        ...(uploaded.length === 1 ? { source_input_asset_id: uploaded[0]!.inputAssetId } : {}),
        ...(input.prompt ? { prompt: input.prompt } : {}),
        ...model,
        ...hook(options),
      });
      break;
    }
    case 'sketch': {
      const { url, inputAssetId } = await app.uploadInput(taskId, input.sketch, 'sketch.png', 'uploaded_sketch');
      submitted = await app.sketchToModel({
        task_id: taskId,
        input_sketch_asset_url: url,
        source_input_asset_id: inputAssetId,
        ...(input.prompt ? { prompt: input.prompt } : {}),
        ...model,
        ...hook(options),
      });
      break;
    }
  }
  options.onSubmitted?.(submitted);
  const done = await app.follow(taskId, 'model', options);
  if (!done.asset_url) {
    throw new Error('complete without a model URL');
  }
  return { taskId, submitted, model: done, modelUrl: done.asset_url };
}

/** One concept image the user can pick. */
export interface Concept {
  rowId: string;
  /** The non-expiring URL stored in the row (the input for image-to-model). */
  assetUrl: string;
  /** What to display: the view's URL (a fresh signed URL for a private bucket). */
  displayUrl: string;
}

export interface FlowBResult {
  taskId: string;
  concepts: Concept[];
  modelUrl: string;
  refinedUrl?: string;
}

/**
 * Flow B: image → concepts → the user picks one → model → (optionally) refine, all under one
 * `task_id`. `pick` shows the concepts and resolves with the chosen one.
 */
export async function flowB(
  app: MakeIt3D,
  image: Blob,
  prompt: string,
  pick: (concepts: Concept[]) => Promise<Concept>,
  options: FlowBOptions = {},
): Promise<FlowBResult> {
  const taskId = started(options);
  const input = await app.uploadInput(taskId, image, 'photo.png', 'uploaded_photo');
  const c = await app.imageToImage({
    task_id: taskId,
    input_image_asset_url: input.url,
    prompt,
    ...defined(options.concepts),
    ...hook(options),
  });
  options.onSubmitted?.(c);
  const done = await app.follow(taskId, 'concepts', options);
  const rows = await app.conceptRows(taskId);
  const concepts: Concept[] = rows
    .filter((r) => r.status === 'complete' && r.asset_url)
    .map((r) => ({
      rowId: r.id,
      assetUrl: r.asset_url!,
      displayUrl: done.asset_urls[indexOf(r)] ?? r.asset_url!,
    }));
  const chosen = await pick(concepts);

  // The concept is an output of this task, so the worker accepts it as an input of the same task.
  const m = await app.imageToModel({
    task_id: taskId,
    input_image_asset_urls: [chosen.assetUrl],
    source_concept_image_id: chosen.rowId,
    prompt,
    ...defined(options.model),
    ...hook(options),
  });
  options.onSubmitted?.(m);
  const model = await app.follow(taskId, 'model', options);
  const modelUrl = model.asset_url!;
  if (!options.refine) {
    return { taskId, concepts, modelUrl };
  }

  const draft = await app.modelRow(taskId, 'model');
  if (!draft?.ai_service_task_id) {
    throw new Error('the draft model has no Tripo task id');
  }
  const r = await app.refineModel({ task_id: taskId, tripo_draft_task_id: draft.ai_service_task_id, ...hook(options) });
  options.onSubmitted?.(r);
  const refined = await app.follow(taskId, 'refine', options);
  return { taskId, concepts, modelUrl, refinedUrl: refined.asset_url! };
}

/**
 * After a reload: follows the task again from its id (kept through `onTaskId`) — the latest step,
 * or `step`. The first view comes at once (the current state), then every change until the step
 * is final; a task already final answers with its final view.
 */
export function resume(
  app: MakeIt3D,
  taskId: string,
  options: FollowOptions & { step?: Step } = {},
): Promise<StatusResponse> {
  return app.follow(taskId, options.step, options);
}

/**
 * A failed step may be submitted again (a new attempt on the same rows): here, flow A's model
 * step retried once with the same request after a failure the user can do nothing about.
 */
export async function retryModelOnce(
  app: MakeIt3D,
  req: TextToModelRequest,
  options: FollowOptions = {},
): Promise<StatusResponse> {
  await app.textToModel(req);
  try {
    return await app.follow(req.task_id, 'model', options);
  } catch (e) {
    const userCanFix =
      e instanceof StepFailedError && ['content_policy', 'invalid_input', 'cancelled'].includes(e.error.code);
    if (!(e instanceof StepFailedError) || userCanFix) {
      throw e;
    }
    const again = await app.textToModel(req); // 202: attempt 2
    if (!again.created) throw new Error('the retry did not start a new attempt');
    return app.follow(req.task_id, 'model', options);
  }
}
