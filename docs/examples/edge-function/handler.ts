/**
 * The webhook receiver of makeit3d-bff as a Supabase Edge Function, the part that runs anywhere
 * (Deno on Supabase, Node in the end-to-end suite): verifies the Standard Webhooks signature with
 * the `standardwebhooks` package and marks a row of `push_notifications` (notifications.sql) for
 * the app's push sender. `index.ts` is the Deno entry point.
 *
 * Answers: 204 marked (or already marked: a retry of the same `webhook-id`); 401 a signature that
 * does not verify (tampered, another secret, older than 5 minutes) — nothing is marked; 500 the
 * database failed (the worker tries again with the same `webhook-id`). A 4xx other than 408/429
 * ends the worker's deliveries of that event, so answer 401 only for what is not ours.
 */
import { Webhook } from 'standardwebhooks';
import type { SupabaseClient } from '@supabase/supabase-js';

/** The body the worker POSTs: the step's status view (docs/api.md § Webhooks), final. */
export interface FinalView {
  task_id: string;
  step: 'concepts' | 'model' | 'refine';
  status: 'complete' | 'failed';
  asset_url: string | null;
  error: { code: string; message: string } | null;
}

export interface HandlerConfig {
  /** `WEBHOOK_SECRET`, the same `whsec_…` as the worker's. */
  secret: string;
  /** A client with the service role (the function writes past row-level security). */
  supabase: SupabaseClient;
  /** The worker's row tables, if renamed (`CONCEPT_IMAGES_TABLE_NAME`, `MODELS_TABLE_NAME`). */
  tables?: { concepts?: string; models?: string };
}

function isFinalView(v: unknown): v is FinalView {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o['task_id'] === 'string' &&
    (o['step'] === 'concepts' || o['step'] === 'model' || o['step'] === 'refine') &&
    (o['status'] === 'complete' || o['status'] === 'failed')
  );
}

const text = (status: number, body: string): Response =>
  new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } });

export function createHandler(config: HandlerConfig): (req: Request) => Promise<Response> {
  const webhook = new Webhook(config.secret);
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'POST') return text(405, 'POST only');
    // The raw body: the signature covers these exact bytes (never re-serialize before verifying).
    const body = await req.text();
    let view: unknown;
    try {
      view = webhook.verify(body, {
        'webhook-id': req.headers.get('webhook-id') ?? '',
        'webhook-timestamp': req.headers.get('webhook-timestamp') ?? '',
        'webhook-signature': req.headers.get('webhook-signature') ?? '',
      });
    } catch {
      return text(401, 'invalid signature');
    }
    if (!isFinalView(view)) return text(400, 'not a final status view');
    const webhookId = req.headers.get('webhook-id') ?? '';

    // Whose task: the owner of the step's rows (the worker writes `user_id` on each).
    const table =
      view.step === 'concepts'
        ? (config.tables?.concepts ?? 'concept_images')
        : (config.tables?.models ?? 'models');
    const owner = await config.supabase
      .from(table)
      .select('user_id')
      .eq('task_id', view.task_id)
      .not('user_id', 'is', null)
      .limit(1);
    if (owner.error) return text(500, 'could not read the rows');
    const userId = (owner.data?.[0] as { user_id?: string } | undefined)?.user_id;
    if (!userId) return new Response(null, { status: 204 }); // no rows: nobody to tell

    // One row per event: a retry (same webhook-id) changes nothing.
    const mark = await config.supabase.from('push_notifications').upsert(
      {
        webhook_id: webhookId,
        user_id: userId,
        task_id: view.task_id,
        step: view.step,
        status: view.status,
        error_code: view.error?.code ?? null,
        asset_url: view.asset_url,
      },
      { onConflict: 'webhook_id', ignoreDuplicates: true },
    );
    if (mark.error) return text(500, 'could not mark the notification');
    return new Response(null, { status: 204 });
  };
}
