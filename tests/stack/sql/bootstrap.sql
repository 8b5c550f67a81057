-- What a Supabase project provides before our migrations run, rebuilt on a plain
-- PostgreSQL 15 for the local stack (shared/reference/supabase-http.md §6.1–6.3).
-- Never apply this to a real Supabase project: there it already exists.
--
-- Run as the cluster superuser (`postgres`) with
--   psql -v ON_ERROR_STOP=1 -v authenticator_password=... -f bootstrap.sql
-- Idempotent: running it again changes nothing (the password is set again).

\if :{?authenticator_password}
\else
  \set authenticator_password 'authenticator'
\endif

-- §6.1 Roles ---------------------------------------------------------------

do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit createrole;
  end if;
end
$$;

-- Re-assert the attributes, in case a role existed with other ones.
alter role anon nologin noinherit;
alter role authenticated nologin noinherit;
alter role service_role nologin noinherit bypassrls;
alter role authenticator login noinherit password :'authenticator_password';
alter role supabase_auth_admin login noinherit createrole;

-- PostgREST connects as authenticator and switches to the JWT's role per request.
grant anon, authenticated, service_role to authenticator;

-- Supabase's per-role statement timeouts.
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';

-- §6.2 Schema `extensions` ------------------------------------------------

create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

-- Supabase puts `extensions` on the search path of its admin role, so migrations
-- can call uuid_generate_v4() unqualified; do the same for our superuser.
alter role current_user set search_path = "$user", public, extensions;

-- §6.2 Schema `public`: the API roles may use everything, RLS decides rows --

grant usage on schema public to anon, authenticated, service_role;
grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
grant all on all functions in schema public to anon, authenticated, service_role;
-- Applies to objects this role (the one running the migrations) creates later,
-- as Supabase's default privileges for `postgres` do on a project.
alter default privileges in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on functions to anon, authenticated, service_role;

-- §6.3 Schema `auth` ------------------------------------------------------

create schema if not exists auth authorization supabase_auth_admin;
alter schema auth owner to supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;

-- The minimal columns of GoTrue's auth.users. The stack's create_user inserts
-- here, because app tables reference auth.users(id).
create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key default gen_random_uuid(),
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  encrypted_password varchar(255),
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  is_super_admin boolean,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
alter table auth.users owner to supabase_auth_admin;
grant select on auth.users to service_role;

-- The claim readers, as in GoTrue's migrations: the legacy per-claim setting
-- first, then the JSON of `request.jwt.claims` that PostgREST 9+ sets.
-- Empty strings count as missing; outside a request they return NULL.
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
  to anon, authenticated, service_role;

-- §6.1/§6.2 Schema `storage` ----------------------------------------------
-- The part of Supabase Storage's own migrations (supabase/storage,
-- migrations/tenant/) that policies on storage.objects rely on: the role that
-- owns the schema, storage.buckets, storage.objects with RLS on, and
-- storage.foldername(). The Storage API itself is the gateway's fake, which
-- keeps its objects elsewhere; these tables exist so that migrations naming
-- storage.objects apply and their policies can be tested in SQL.

do $$
begin
  if not exists (select from pg_roles where rolname = 'supabase_storage_admin') then
    create role supabase_storage_admin login noinherit createrole;
  end if;
end
$$;
alter role supabase_storage_admin login noinherit createrole;
alter role supabase_storage_admin set search_path = storage;
-- Storage switches to the JWT's role per request, through authenticator.
grant authenticator to supabase_storage_admin;

create schema if not exists storage authorization supabase_storage_admin;
alter schema storage owner to supabase_storage_admin;
grant usage on schema storage to anon, authenticated, service_role;

create table if not exists storage.buckets (
  id text primary key,
  name text not null,
  owner uuid,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  public boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  owner_id text
);
create unique index if not exists bname on storage.buckets using btree (name);

create table if not exists storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text,
  name text,
  owner uuid,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now(),
  metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  version text,
  owner_id text,
  user_metadata jsonb,
  constraint "objects_bucketId_fkey" foreign key (bucket_id) references storage.buckets (id)
);
create unique index if not exists bucketid_objname on storage.objects using btree (bucket_id, name);
create index if not exists name_prefix_search on storage.objects (name text_pattern_ops);

alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;

-- The path without its last element: 'u1/in/a.png' -> {u1,in}; 'a.png' -> {}.
create or replace function storage.foldername(name text) returns text[]
language plpgsql
as $function$
declare
  _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[1:array_length(_parts, 1) - 1];
end
$function$;
alter function storage.foldername(text) owner to supabase_storage_admin;

-- Supabase's default privileges give the API roles everything here and let RLS
-- decide; service_role (BYPASSRLS) sees every row.
grant select, insert, update, delete on storage.buckets, storage.objects
  to anon, authenticated, service_role;
grant execute on function storage.foldername(text) to anon, authenticated, service_role;
