/**
 * The worker's HTTP API as the playground uses it (docs/api.md): the generation endpoints, the
 * status endpoint, /health and /playground/config.json. Errors carry the API's own words
 * (`error.message` and `details` of the one error shape, docs/api.md "Errors").
 */

export type Step = 'concepts' | 'model' | 'refine';
export type Status = 'pending' | 'processing' | 'complete' | 'failed';

export interface SubmitResponse {
  task_id: string;
  step: Step;
  status: Status;
  status_url: string;
}

export interface StepStatus {
  step: Step;
  service: string;
  status: Status;
  progress: number;
  asset_url: string | null;
  asset_urls: string[];
  error: { code: string; message: string } | null;
}

export interface StatusResponse extends StepStatus {
  task_id: string;
  updated_at: string;
  steps: StepStatus[];
}

/** `GET /playground/config.json`. */
export interface PlaygroundConfig {
  supabase_url: string;
  supabase_anon_key: string | null;
  auth_mode: 'supabase' | 'none';
  local_only: boolean;
  anonymous_users: boolean;
  input_bucket: string;
  max_input_bytes: number;
}

/** The request bodies the playground sends: only documented fields. */
export interface ConceptsRequest {
  task_id: string;
  input_image_asset_url: string;
  prompt: string;
  style?: string;
  n?: number;
  background?: 'transparent' | 'opaque' | 'auto';
}
export interface ImageToModelRequest {
  task_id: string;
  input_image_asset_urls: string[];
  prompt?: string;
  source_concept_image_id?: string;
}
export interface SketchToModelRequest {
  task_id: string;
  input_sketch_asset_url: string;
  prompt?: string;
}
export interface TextToModelRequest {
  task_id: string;
  prompt: string;
  style?: string;
}
export interface RefineRequest {
  task_id: string;
  tripo_draft_task_id: string;
}

export interface Endpoints {
  'image-to-image': ConceptsRequest;
  'image-to-model': ImageToModelRequest;
  'sketch-to-model': SketchToModelRequest;
  'text-to-model': TextToModelRequest;
  'refine-model': RefineRequest;
}

/** A refusal or failure of the API, in its own words. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: { field: string; message: string }[] = [],
  ) {
    super(message);
  }

  /** `message` and one line per field detail. */
  describe(): string {
    const lines = this.details.map((d) => `${d.field}: ${d.message}`);
    return [this.message, ...lines].join('\n');
  }
}

/** A fresh task id (docs/client-guide.md §2). */
export function newTaskId(): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0] ?? 0;
  return `play-${Date.now()}-${random.toString(36)}`;
}

export class Api {
  /** `token` gives the current access token, or null (allowed only with AUTH_MODE=none). */
  constructor(
    private readonly base: string,
    private readonly token: () => Promise<string | null>,
  ) {}

  async config(): Promise<PlaygroundConfig> {
    return this.call<PlaygroundConfig>('GET', '/playground/config.json', undefined, false);
  }

  submit<E extends keyof Endpoints>(endpoint: E, body: Endpoints[E]): Promise<SubmitResponse> {
    return this.call<SubmitResponse>('POST', `/generate/${endpoint}`, body, true);
  }

  status(taskId: string, step: Step, signal?: AbortSignal): Promise<StatusResponse> {
    const path = `/tasks/${encodeURIComponent(taskId)}/status?step=${step}`;
    return this.call<StatusResponse>('GET', path, undefined, true, signal);
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    auth: boolean,
    signal?: AbortSignal,
  ): Promise<T> {
    const headers: Record<string, string> = {};
    if (auth) {
      const token = await this.token();
      if (token) headers['authorization'] = `Bearer ${token}`;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    let resp: Response;
    try {
      resp = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ?? null,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new ApiError(0, 'network_error', `The worker could not be reached (${String(e)}).`);
    }
    const text = await resp.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!resp.ok) {
      const err = (json as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
      const details = Array.isArray(err?.details)
        ? (err.details as { field: string; message: string }[])
        : [];
      throw new ApiError(
        resp.status,
        err?.code ?? 'http_error',
        err?.message ?? `HTTP ${resp.status}: ${text.slice(0, 200)}`,
        details,
      );
    }
    return json as T;
  }
}
