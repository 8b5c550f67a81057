/**
 * Supabase Edge Function `makeit3d-webhook`: the receiver of makeit3d-bff's webhooks (see
 * handler.ts). Deploy (docs/client-guide.md § "Webhooks to a Supabase Edge Function"):
 *
 *   supabase secrets set WEBHOOK_SECRET=whsec_…          # the worker's WEBHOOK_SECRET
 *   supabase functions deploy makeit3d-webhook --no-verify-jwt
 *
 * `--no-verify-jwt`: the worker signs its requests the Standard Webhooks way, it sends no Supabase
 * JWT. SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set by Supabase in every function.
 */
import { createClient } from '@supabase/supabase-js';
import { createHandler } from './handler.ts';

/** The little of Deno this function uses (no Deno types needed to type-check it). */
declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(handler: (req: Request) => Response | Promise<Response>): unknown;
};

function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const supabase = createClient(required('SUPABASE_URL'), required('SUPABASE_SERVICE_ROLE_KEY'), {
  auth: { persistSession: false, autoRefreshToken: false },
});

Deno.serve(createHandler({ secret: required('WEBHOOK_SECRET'), supabase }));
