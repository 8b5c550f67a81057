/**
 * Who the page acts as: a Supabase session (email + password, or anonymous), or an access token
 * pasted by hand (what `scripts/dev.sh` prints). Either way a supabase-js client uploads with the
 * user's own rights (the owner-folder policies of migrations/0002) and reads the user's rows.
 * The page only ever holds the project's publishable (anon) key and the user's own token.
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js';

export interface Identity {
  /** The token's `sub`: the first folder of every upload. */
  userId: string;
  /** What the page shows: an email, "anonymous user", or "pasted token". */
  label: string;
  /** The access token's expiry, seconds since the epoch, when known. */
  expiresAt: number | null;
}

const TOKEN_KEY = 'makeit3d-playground-token';

/** The claims of a JWT, unverified (the worker and Supabase verify it; the page only reads `sub`). */
export function jwtClaims(token: string): Record<string, unknown> | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const claims: unknown = JSON.parse(json);
    return typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export class Session {
  /** The client of a sign-in (its session refreshes itself); null without an anon key. */
  private readonly auth: SupabaseClient | null;
  /** A pasted token, when one is in use, and its client (null without an anon key). */
  private pasted: { token: string; client: SupabaseClient | null } | null = null;

  /** `anonKey` null: the worker has no SUPABASE_ANON_KEY, so only a pasted token works, for the API only. */
  constructor(
    readonly supabaseUrl: string,
    private readonly anonKey: string | null,
  ) {
    this.auth = anonKey
      ? createClient(supabaseUrl, anonKey, {
          auth: { persistSession: true, autoRefreshToken: true, storageKey: 'makeit3d-playground-auth' },
        })
      : null;
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        this.usePastedToken(saved);
      } catch {
        sessionStorage.removeItem(TOKEN_KEY);
      }
    }
  }

  /** The client to use for Storage and the tables. */
  get client(): SupabaseClient {
    const c = this.pasted ? this.pasted.client : this.auth;
    if (!c) throw new Error('The worker has no SUPABASE_ANON_KEY: the page cannot reach Supabase.');
    return c;
  }

  private get authClient(): SupabaseClient {
    if (!this.auth) throw new Error('The worker has no SUPABASE_ANON_KEY: sign-in is off (paste a token).');
    return this.auth;
  }

  async signInWithPassword(email: string, password: string): Promise<void> {
    const { error } = await this.authClient.auth.signInWithPassword({ email, password });
    if (error) throw new Error(error.message);
    this.forgetPasted();
  }

  async signInAnonymously(): Promise<void> {
    const { error } = await this.authClient.auth.signInAnonymously();
    if (error) throw new Error(error.message);
    this.forgetPasted();
  }

  /** Uses `token` (a user access token) for everything until sign-out. */
  usePastedToken(token: string): void {
    const t = token.trim();
    const claims = jwtClaims(t);
    if (!claims || typeof claims['sub'] !== 'string') {
      throw new Error('This is not a user access token (a JWT with a "sub" claim).');
    }
    const client = this.anonKey
      ? createClient(this.supabaseUrl, this.anonKey, { accessToken: async () => t })
      : null;
    this.pasted = { token: t, client };
    sessionStorage.setItem(TOKEN_KEY, t);
  }

  async signOut(): Promise<void> {
    this.forgetPasted();
    await this.auth?.auth.signOut({ scope: 'local' });
  }

  private forgetPasted(): void {
    this.pasted = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }

  /** The current access token, fresh, or null when nobody is signed in. */
  async token(): Promise<string | null> {
    if (this.pasted) return this.pasted.token;
    if (!this.auth) return null;
    const { data } = await this.auth.auth.getSession();
    return data.session?.access_token ?? null;
  }

  async identity(): Promise<Identity | null> {
    const token = await this.token();
    if (!token) return null;
    const claims = jwtClaims(token);
    const sub = claims?.['sub'];
    if (typeof sub !== 'string') return null;
    const email = claims?.['email'];
    const exp = claims?.['exp'];
    const label = this.pasted
      ? `pasted token${typeof email === 'string' && email ? ` (${email})` : ''}`
      : claims?.['is_anonymous'] === true
        ? 'anonymous user'
        : typeof email === 'string'
          ? email
          : 'signed in';
    return { userId: sub, label, expiresAt: typeof exp === 'number' ? exp : null };
  }

  /** Calls `listener` when a sign-in session starts, refreshes or ends. */
  onChange(listener: () => void): void {
    this.auth?.auth.onAuthStateChange(() => listener());
  }

  /**
   * Uploads `file` to `{bucket}/{userId}/playground/{time}-{kind}.{ext}` with the user's rights
   * and returns the `authenticated/` URL the worker reads with the user's token.
   */
  async upload(bucket: string, userId: string, kind: 'photo' | 'sketch', file: File): Promise<string> {
    const ext = file.type === 'image/jpeg' ? 'jpg' : file.type === 'image/webp' ? 'webp' : 'png';
    const path = `${userId}/playground/${Date.now()}-${kind}.${ext}`;
    const { error } = await this.client.storage
      .from(bucket)
      .upload(path, file, { contentType: file.type || 'image/png', upsert: true });
    if (error) throw new Error(`Upload refused: ${error.message}`);
    const encoded = path.split('/').map(encodeURIComponent).join('/');
    return `${this.supabaseUrl}/storage/v1/object/authenticated/${encodeURIComponent(bucket)}/${encoded}`;
  }

  /** The `concept_images` row id of a concept (by its URL), if the row can be read. */
  async conceptRowId(taskId: string, assetUrl: string): Promise<string | null> {
    if (!this.anonKey) return null;
    const { data, error } = await this.client
      .from('concept_images')
      .select('id, asset_url')
      .eq('task_id', taskId);
    if (error || !Array.isArray(data)) return null;
    const row = (data as { id: string; asset_url: string | null }[]).find((r) => r.asset_url === assetUrl);
    return row?.id ?? null;
  }

  /** The Tripo task id of the task's `model` step (`models.ai_service_task_id`): what a refine needs. */
  async draftTripoId(taskId: string): Promise<string | null> {
    if (!this.anonKey) return null;
    const { data, error } = await this.client
      .from('models')
      .select('ai_service_task_id, metadata')
      .eq('task_id', taskId);
    if (error || !Array.isArray(data)) return null;
    const rows = data as { ai_service_task_id: string | null; metadata: { step?: string } | null }[];
    const row = rows.find((r) => (r.metadata?.step ?? 'model') === 'model' && r.ai_service_task_id);
    return row?.ai_service_task_id ?? null;
  }
}
