/**
 * A complete MakeIt3D client of makeit3d-bff, written for the browser (or any runtime with
 * `fetch`): `@supabase/supabase-js` for sign-in, Storage uploads and the tables, `fetch` for the
 * worker's API. It is type-checked by `scripts/test.sh` (`tsc -p docs/examples`, strict), so it
 * follows the API as documented in docs/api.md and docs/client-guide.md.
 *
 *   const app = new MakeIt3D({ bffUrl, supabaseUrl, supabaseAnonKey, inputBucket });
 *   await app.supabase.auth.signInWithPassword({ email, password });
 *   const model = await flowA(app, { kind: 'image', images: [file] }, (s) => render(s));
 *   const { concepts } = await flowB(app, file, 'a cute vinyl toy', async (c) => c[0]!, render);
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
}

/** Answer of `GET /tasks/{task_id}/status`. */
export interface StatusResponse extends StepStatus {
  task_id: string;
  updated_at: string;
  steps: StepStatus[];
}

export type ApiErrorCode =
  | 'malformed_json'
  | 'unauthorized'
  | 'not_found'
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

export interface ImageToImageRequest {
  task_id: string;
  input_image_asset_url: string;
  prompt: string;
  style?: string;
  n?: number;
  background?: 'transparent' | 'opaque' | 'auto';
}

export interface TextToModelRequest extends ModelOptions {
  task_id: string;
  prompt: string;
}

interface ImageModelFields extends ModelOptions {
  task_id: string;
  prompt?: string;
  orientation?: 'default' | 'align_image';
  source_concept_image_id?: string;
  source_input_asset_id?: string;
}

export interface ImageToModelRequest extends ImageModelFields {
  /** 1 image, or 2–4 views in the order front, left, back, right. */
  input_image_asset_urls: string[];
}

export interface SketchToModelRequest extends ImageModelFields {
  input_sketch_asset_url: string;
}

export interface RefineModelRequest extends ModelOptions {
  task_id: string;
  /** The Tripo task id of the draft: `models.ai_service_task_id` of the draft's row. */
  tripo_draft_task_id: string;
  prompt?: string;
  input_model_asset_url?: string;
}

/** A non-2xx answer of the worker. */
export class BffError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode | 'network_error',
    message: string,
    readonly details: ErrorDetail[] = [],
    /** `Retry-After` of a 429 (seconds): a per-user limit; nothing was created. */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'BffError';
  }

  /** Worth sending the same request again later (nothing was left half-made). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 502 || this.status === 503;
  }
}

/** A step that ended `failed`. */
export class StepFailedError extends Error {
  constructor(
    readonly step: Step,
    readonly error: StepError,
  ) {
    super(`${step} failed: ${error.code}: ${error.message}`);
    this.name = 'StepFailedError';
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
}

/** What the UI shows while a step runs. */
export type ProgressListener = (status: StepStatus) => void;

export interface WaitOptions {
  /** Give up after this long (default 35 min: the worker's deadline is 30 min). */
  timeoutMs?: number;
  /** Stop waiting (e.g. the user left the page). */
  signal?: AbortSignal;
}

/** A task id for a new workflow: `task-<ms>-<random>` (any 1–128 of `A-Za-z0-9_.:-` works). */
export function newTaskId(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `task-${Date.now()}-${random[0]!.toString(36)}${random[1]!.toString(36)}`;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error('aborted'));
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    });
  });

/** Percent-encodes each segment of a storage path. */
const encodePath = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

export class MakeIt3D {
  readonly supabase: SupabaseClient<Database>;

  constructor(
    readonly config: ClientConfig,
    supabase?: SupabaseClient<Database>,
  ) {
    this.supabase = supabase ?? createClient<Database>(config.supabaseUrl, config.supabaseAnonKey);
  }

  /** The signed-in user's session (supabase-js refreshes the access token as needed). */
  private async session(): Promise<{ userId: string; token: string }> {
    const { data, error } = await this.supabase.auth.getSession();
    if (error || !data.session) {
      throw new BffError(401, 'unauthorized', 'sign in first');
    }
    return { userId: data.session.user.id, token: data.session.access_token };
  }

  /**
   * Uploads one input into the user's own folder (`{user_id}/{task_id}/{name}`), records it in
   * `input_assets`, and returns the URL to send to the worker and the row's id.
   */
  async uploadInput(
    taskId: string,
    file: Blob,
    name: string,
    inputAssetType: 'uploaded_photo' | 'uploaded_sketch',
  ): Promise<{ url: string; inputAssetId: string }> {
    const { userId } = await this.session();
    const path = `${userId}/${taskId}/${name}`;
    const bucket = this.config.inputBucket;
    const upload = await this.supabase.storage
      .from(bucket)
      .upload(path, file, { contentType: file.type || 'image/png', upsert: true });
    if (upload.error) {
      throw new Error(`upload of ${name} failed: ${upload.error.message}`);
    }
    // A private bucket: the authenticated object URL (the worker fetches it with its service key).
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

  /** Records a text prompt as the task's input (flow A from text). */
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
  private async submit(endpoint: string, body: object): Promise<SubmitResponse> {
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

  private async submitOnce(endpoint: string, body: object): Promise<SubmitResponse> {
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
    return (await this.read(res)) as SubmitResponse;
  }

  private async read(res: Response): Promise<unknown> {
    const text = await res.text();
    if (res.ok) {
      return JSON.parse(text) as unknown;
    }
    let body: ApiErrorBody | undefined;
    try {
      body = JSON.parse(text) as ApiErrorBody;
    } catch {
      body = undefined;
    }
    throw new BffError(
      res.status,
      body?.error.code ?? 'internal_error',
      body?.error.message ?? (text || res.statusText),
      body?.error.details ?? [],
      res.status === 429 ? Number(res.headers.get('Retry-After') ?? '') || undefined : undefined,
    );
  }

  imageToImage(req: ImageToImageRequest): Promise<SubmitResponse> {
    return this.submit('image-to-image', req);
  }

  textToModel(req: TextToModelRequest): Promise<SubmitResponse> {
    return this.submit('text-to-model', req);
  }

  imageToModel(req: ImageToModelRequest): Promise<SubmitResponse> {
    return this.submit('image-to-model', req);
  }

  sketchToModel(req: SketchToModelRequest): Promise<SubmitResponse> {
    return this.submit('sketch-to-model', req);
  }

  refineModel(req: RefineModelRequest): Promise<SubmitResponse> {
    return this.submit('refine-model', req);
  }

  /** `GET /tasks/{task_id}/status?step=…`. */
  async status(taskId: string, step: Step): Promise<StatusResponse> {
    const { token } = await this.session();
    let res: Response;
    try {
      res = await fetch(
        `${this.config.bffUrl}/tasks/${encodeURIComponent(taskId)}/status?step=${step}`,
        { headers: { Authorization: `Bearer ${token}` } },
      );
    } catch (e) {
      throw new BffError(0, 'network_error', String(e));
    }
    return (await this.read(res)) as StatusResponse;
  }

  /**
   * Polls a step until it is `complete` (returned) or `failed` (thrown as `StepFailedError`),
   * with back-off: 1 s, 2 s, 4 s, then every 5 s. Transient errors of the poll itself are
   * tolerated; `onProgress` sees every answer.
   */
  async waitFor(
    taskId: string,
    step: Step,
    onProgress: ProgressListener = () => {},
    options: WaitOptions = {},
  ): Promise<StatusResponse> {
    const deadline = Date.now() + (options.timeoutMs ?? 35 * 60_000);
    const delays = [1_000, 2_000, 4_000];
    for (let i = 0; ; i++) {
      try {
        const s = await this.status(taskId, step);
        onProgress(s);
        if (s.status === 'complete') {
          return s;
        }
        if (s.status === 'failed') {
          throw new StepFailedError(step, s.error ?? { code: 'failed', message: 'failed' });
        }
      } catch (e) {
        if (!(e instanceof BffError) || !e.retryable) {
          throw e;
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`${step} of ${taskId} is still running; check again later`);
      }
      await sleep(delays[i] ?? 5_000, options.signal);
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
      // Rows follow the task's state within moments of the status endpoint.
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
// The two flows
// -------------------------------------------------------------------------------------------

/** Flow A input: text, one image (or 2–4 views), or a sketch. */
export type FlowAInput =
  | { kind: 'text'; prompt: string; style?: string }
  | { kind: 'image'; images: Blob[]; prompt?: string }
  | { kind: 'sketch'; sketch: Blob; prompt?: string };

/** What the UI shows for a status answer. */
export function describe(s: StepStatus): string {
  switch (s.status) {
    case 'pending':
      return 'Queued…';
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

/** Flow A: text, image(s) or sketch → a 3D model. Returns the model's URL. */
export async function flowA(
  app: MakeIt3D,
  input: FlowAInput,
  onProgress: ProgressListener = () => {},
): Promise<string> {
  const taskId = newTaskId();
  switch (input.kind) {
    case 'text': {
      await app.recordPrompt(taskId, input.prompt, input.style);
      await app.textToModel({
        task_id: taskId,
        prompt: input.prompt,
        ...(input.style ? { style: input.style } : {}),
      });
      break;
    }
    case 'image': {
      const views = ['front', 'left', 'back', 'right'];
      const uploaded = [];
      for (const [i, image] of input.images.slice(0, 4).entries()) {
        uploaded.push(await app.uploadInput(taskId, image, `${views[i]}.png`, 'uploaded_photo'));
      }
      await app.imageToModel({
        task_id: taskId,
        input_image_asset_urls: uploaded.map((u) => u.url),
        ...(uploaded.length === 1 ? { source_input_asset_id: uploaded[0]!.inputAssetId } : {}),
        ...(input.prompt ? { prompt: input.prompt } : {}),
      });
      break;
    }
    case 'sketch': {
      const { url, inputAssetId } = await app.uploadInput(taskId, input.sketch, 'sketch.png', 'uploaded_sketch');
      await app.sketchToModel({
        task_id: taskId,
        input_sketch_asset_url: url,
        source_input_asset_id: inputAssetId,
        ...(input.prompt ? { prompt: input.prompt } : {}),
      });
      break;
    }
  }
  const done = await app.waitFor(taskId, 'model', onProgress);
  if (!done.asset_url) {
    throw new Error('complete without a model URL');
  }
  return done.asset_url;
}

/** One concept image the user can pick. */
export interface Concept {
  rowId: string;
  /** The non-expiring URL stored in the row (the input for image-to-model). */
  assetUrl: string;
  /** What to display: the status answer's URL (a fresh signed URL for a private bucket). */
  displayUrl: string;
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
  onProgress: ProgressListener = () => {},
  refine = false,
): Promise<{ taskId: string; concepts: Concept[]; modelUrl: string; refinedUrl?: string }> {
  const taskId = newTaskId();
  const input = await app.uploadInput(taskId, image, 'photo.png', 'uploaded_photo');
  await app.imageToImage({ task_id: taskId, input_image_asset_url: input.url, prompt, n: 3 });
  const done = await app.waitFor(taskId, 'concepts', onProgress);
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
  await app.imageToModel({
    task_id: taskId,
    input_image_asset_urls: [chosen.assetUrl],
    source_concept_image_id: chosen.rowId,
    prompt,
  });
  const model = await app.waitFor(taskId, 'model', onProgress);
  const modelUrl = model.asset_url!;
  if (!refine) {
    return { taskId, concepts, modelUrl };
  }

  const draft = await app.modelRow(taskId, 'model');
  if (!draft?.ai_service_task_id) {
    throw new Error('the draft model has no Tripo task id');
  }
  await app.refineModel({ task_id: taskId, tripo_draft_task_id: draft.ai_service_task_id });
  const refined = await app.waitFor(taskId, 'refine', onProgress);
  return { taskId, concepts, modelUrl, refinedUrl: refined.asset_url! };
}

/**
 * A failed step may be submitted again (a new attempt on the same rows): here, flow A's model
 * step retried once with the same request after a failure the user can do nothing about.
 */
export async function retryModelOnce(
  app: MakeIt3D,
  req: TextToModelRequest,
  onProgress: ProgressListener = () => {},
): Promise<StatusResponse> {
  await app.textToModel(req);
  try {
    return await app.waitFor(req.task_id, 'model', onProgress);
  } catch (e) {
    const userCanFix = e instanceof StepFailedError && ['content_policy', 'invalid_input'].includes(e.error.code);
    if (!(e instanceof StepFailedError) || userCanFix) {
      throw e;
    }
    await app.textToModel(req); // 202: attempt 2
    return app.waitFor(req.task_id, 'model', onProgress);
  }
}
