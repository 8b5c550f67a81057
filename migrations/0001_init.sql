-- 0001_init: the metadata tables of makeit3d-bff (SPEC §7).
--
-- input_assets    the client's inputs; the client owns these rows.
-- concept_images  OpenAI concept images; written by the worker only.
-- models          Tripo models (draft and refined); written by the worker only.
--
-- Applies on a Supabase project (SQL editor, `supabase db push`, psql) and on the
-- local test database (after tests/stack/sql/bootstrap.sql). It relies on what
-- Supabase provides: the roles anon / authenticated / service_role (BYPASSRLS),
-- auth.users and auth.uid().
--
-- Idempotent: a second run is a no-op. It also upgrades tables created from the
-- original service's schema (API_REFACTOR.md §V) in place: missing columns and
-- constraints are added, NOT NULLs the worker cannot satisfy are dropped, and the
-- original's FOR ALL policies (which let users write worker rows) are removed.
-- No BEGIN/COMMIT here: migration runners wrap each file in a transaction.

-- Extensions ----------------------------------------------------------------

-- uuid-ossp as in the source schema (clients may call uuid_generate_v4()). On
-- Supabase extensions live in schema `extensions`; elsewhere in the default one.
-- Column defaults below use the built-in gen_random_uuid(), which needs no
-- extension and no search_path; the worker sends deterministic ids anyway.
do $$
begin
  if exists (select from pg_namespace where nspname = 'extensions') then
    create extension if not exists "uuid-ossp" with schema extensions;
  else
    create extension if not exists "uuid-ossp";
  end if;
end
$$;

-- Tables --------------------------------------------------------------------

create table if not exists public.input_assets (
  id uuid primary key default gen_random_uuid(),
  task_id text not null,
  user_id uuid references auth.users (id) on delete set null,
  prompt text,
  style text,
  input_asset_type text not null, -- e.g. 'text_prompt', 'uploaded_photo', 'uploaded_sketch'
  asset_url text,
  status text not null default 'pending',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  metadata jsonb,
  constraint input_assets_status_check
    check (status in ('pending', 'processing', 'complete', 'failed'))
);

create table if not exists public.concept_images (
  id uuid primary key default gen_random_uuid(),
  task_id text not null,
  user_id uuid references auth.users (id) on delete set null,
  source_input_asset_id uuid references public.input_assets (id) on delete set null,
  prompt text not null,
  style text,
  asset_url text, -- NULL until complete; then a URL that does not expire
  status text not null default 'pending',
  ai_service_task_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  metadata jsonb,
  constraint concept_images_status_check
    check (status in ('pending', 'processing', 'complete', 'failed'))
);

create table if not exists public.models (
  id uuid primary key default gen_random_uuid(),
  task_id text not null,
  user_id uuid references auth.users (id) on delete set null,
  source_input_asset_id uuid references public.input_assets (id) on delete set null,
  source_concept_image_id uuid references public.concept_images (id) on delete set null,
  prompt text, -- nullable: image and sketch inputs need no prompt
  style text,
  asset_url text, -- NULL until complete; then a URL that does not expire
  status text not null default 'pending',
  ai_service_task_id text, -- the Tripo task id
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  metadata jsonb,
  constraint models_status_check
    check (status in ('pending', 'processing', 'complete', 'failed'))
);

-- Upgrade tables made from the original schema (no-ops on tables made above).
alter table public.input_assets add column if not exists updated_at timestamptz not null default now();
alter table public.concept_images add column if not exists updated_at timestamptz not null default now();
alter table public.models add column if not exists updated_at timestamptz not null default now();
-- The original's live database had asset_url NOT NULL (it wrote "pending");
-- models.prompt was NOT NULL, which failed every image input without a prompt.
alter table public.concept_images alter column asset_url drop not null;
alter table public.models alter column asset_url drop not null;
alter table public.models alter column prompt drop not null;

do $$
declare
  t text;
begin
  foreach t in array array['input_assets', 'concept_images', 'models'] loop
    if not exists (
      select from pg_constraint
      where conrelid = format('public.%I', t)::regclass
        and conname = t || '_status_check'
    ) then
      execute format(
        'alter table public.%I add constraint %I check (status in (''pending'', ''processing'', ''complete'', ''failed''))',
        t, t || '_status_check');
    end if;
  end loop;
end
$$;

comment on table public.input_assets is
  'Inputs a client uploaded for a task (owned and written by the client).';
comment on table public.concept_images is
  'Concept images generated for a task; written by the backend (service role) only.';
comment on table public.models is
  '3D models generated for a task; written by the backend (service role) only.';
comment on column public.models.ai_service_task_id is 'The Tripo task id.';

-- updated_at ----------------------------------------------------------------

-- One shared trigger function. Empty search_path: it resolves nothing by name
-- (Supabase lint 0011), now() lives in pg_catalog which is always searched.
create or replace function public.set_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

drop trigger if exists input_assets_set_updated_at on public.input_assets;
create trigger input_assets_set_updated_at
  before update on public.input_assets
  for each row execute function public.set_updated_at();

drop trigger if exists concept_images_set_updated_at on public.concept_images;
create trigger concept_images_set_updated_at
  before update on public.concept_images
  for each row execute function public.set_updated_at();

drop trigger if exists models_set_updated_at on public.models;
create trigger models_set_updated_at
  before update on public.models
  for each row execute function public.set_updated_at();

-- Indexes -------------------------------------------------------------------

-- Lookups by the client's task id; a user's history, newest first (its leading
-- user_id also serves the auth.users foreign key and the RLS filter); lookups
-- by the provider's task id.
create index if not exists input_assets_task_id_idx on public.input_assets (task_id);
create index if not exists input_assets_user_id_created_at_idx on public.input_assets (user_id, created_at desc);

create index if not exists concept_images_task_id_idx on public.concept_images (task_id);
create index if not exists concept_images_user_id_created_at_idx on public.concept_images (user_id, created_at desc);
create index if not exists concept_images_ai_service_task_id_idx on public.concept_images (ai_service_task_id);

create index if not exists models_task_id_idx on public.models (task_id);
create index if not exists models_user_id_created_at_idx on public.models (user_id, created_at desc);
create index if not exists models_ai_service_task_id_idx on public.models (ai_service_task_id);

-- Foreign keys with ON DELETE SET NULL are scanned when the parent row goes
-- (Supabase lint 0001, unindexed foreign keys).
create index if not exists concept_images_source_input_asset_id_idx on public.concept_images (source_input_asset_id);
create index if not exists models_source_input_asset_id_idx on public.models (source_input_asset_id);
create index if not exists models_source_concept_image_id_idx on public.models (source_concept_image_id);

-- Privileges ----------------------------------------------------------------

-- Supabase's default privileges give the API roles everything on new tables
-- and let RLS decide. We say what each role needs, and take write privileges
-- on the worker's tables away from the client roles, so that a client write
-- fails with 42501 even if a permissive policy were ever added by mistake.
grant select, insert, update, delete on public.input_assets to authenticated;
grant select on public.concept_images, public.models to authenticated;
grant select, insert, update, delete on public.input_assets, public.concept_images, public.models to service_role;
revoke insert, update, delete, truncate, references, trigger
  on public.concept_images, public.models from anon, authenticated;
revoke insert, update, delete, truncate, references, trigger
  on public.input_assets from anon;
revoke truncate, references, trigger on public.input_assets from authenticated;

-- Row-level security ---------------------------------------------------------

alter table public.input_assets enable row level security;
alter table public.concept_images enable row level security;
alter table public.models enable row level security;

-- The original service's policies: FOR ALL on concept_images and models would
-- let users write the worker's rows (permissive policies are OR-ed).
drop policy if exists "Users can manage their own input assets" on public.input_assets;
drop policy if exists "Users can view their own concept images" on public.concept_images;
drop policy if exists "Users can manage their own models" on public.models;

-- Users manage their own input_assets. `(select auth.uid())` is evaluated once
-- per statement, not per row (Supabase lint 0003).
drop policy if exists input_assets_select_own on public.input_assets;
create policy input_assets_select_own on public.input_assets
  for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists input_assets_insert_own on public.input_assets;
create policy input_assets_insert_own on public.input_assets
  for insert to authenticated
  with check ((select auth.uid()) = user_id);

drop policy if exists input_assets_update_own on public.input_assets;
create policy input_assets_update_own on public.input_assets
  for update to authenticated
  using ((select auth.uid()) = user_id)
  with check ((select auth.uid()) = user_id);

drop policy if exists input_assets_delete_own on public.input_assets;
create policy input_assets_delete_own on public.input_assets
  for delete to authenticated
  using ((select auth.uid()) = user_id);

-- Users only read their own concept_images and models. No write policy: only
-- the service role (BYPASSRLS) writes them.
drop policy if exists concept_images_select_own on public.concept_images;
create policy concept_images_select_own on public.concept_images
  for select to authenticated
  using ((select auth.uid()) = user_id);

drop policy if exists models_select_own on public.models;
create policy models_select_own on public.models
  for select to authenticated
  using ((select auth.uid()) = user_id);
