-- An example table for the Edge Function of docs/client-guide.md § "Webhooks to a Supabase Edge
-- Function": one row per final step the worker reported, for the app's push-notification sender
-- (which sends "your model is ready" and sets sent_at). Not one of the worker's migrations: the
-- worker never reads or writes it. Run it once in the SQL editor (or with psql).
create table if not exists public.push_notifications (
  id          uuid primary key default gen_random_uuid(),
  -- The Standard Webhooks `webhook-id`: the same on every retry of one event, so a retried
  -- delivery marks nothing twice.
  webhook_id  text not null unique,
  user_id     uuid not null,
  task_id     text not null,
  step        text not null check (step in ('concepts', 'model', 'refine')),
  status      text not null check (status in ('complete', 'failed')),
  error_code  text,
  asset_url   text,
  created_at  timestamptz not null default now(),
  sent_at     timestamptz
);
create index if not exists push_notifications_unsent
  on public.push_notifications (created_at) where sent_at is null;
-- Users may read their own notifications; only the service role (the Edge Function) writes.
alter table public.push_notifications enable row level security;
drop policy if exists push_notifications_select_own on public.push_notifications;
create policy push_notifications_select_own on public.push_notifications
  for select to authenticated using (user_id = (select auth.uid()));
grant select on public.push_notifications to authenticated;
grant all on public.push_notifications to service_role;
