-- 0002_input_storage_policies: Supabase's usual owner-folder Storage policies for
-- the bucket clients upload their inputs to (SPEC §4.1: inputs are read with the
-- caller's rights, so the project's own Storage policies decide).
--
-- A signed-in user (role `authenticated`) may read, upload, overwrite and delete
-- only objects named `{their user id}/…` in the inputs bucket:
--
--   bucket_id = <inputs bucket> and (storage.foldername(name))[1] = (select auth.uid())::text
--
-- Other buckets are not touched: the generated-assets bucket is public (read
-- through /object/public/…) and written by the service role only (BYPASSRLS).
--
-- The inputs bucket's name comes from the setting `makeit3d.input_assets_bucket`,
-- default `user_input_files_bucket` (the source document's bucket). A project
-- that uses another bucket sets it before running this file, e.g.
--
--   alter database postgres set makeit3d.input_assets_bucket = 'my_inputs';
--
-- (that takes effect for new sessions; `set makeit3d.input_assets_bucket = '…'`
-- in the same session works too). Running the file again after a change
-- re-creates the policies for the new name.
--
-- Applies on a Supabase project and on the local test database (after
-- tests/stack/sql/bootstrap.sql, which rebuilds storage.objects and
-- storage.foldername()). Where storage.objects does not exist it does nothing
-- and says so in a NOTICE.
--
-- Idempotent: the policies are dropped and re-created by name, so a second run
-- leaves the same four policies. No BEGIN/COMMIT here: migration runners wrap
-- each file in a transaction.

do $migration$
declare
  bucket text := coalesce(
    nullif(current_setting('makeit3d.input_assets_bucket', true), ''),
    'user_input_files_bucket');
  -- `(select auth.uid())` is evaluated once per statement (Supabase lint 0003).
  own text;
begin
  if to_regclass('storage.objects') is null then
    raise notice '0002_input_storage_policies: storage.objects does not exist; no Storage policies created';
    return;
  end if;

  own := format(
    'bucket_id = %L and (storage.foldername(name))[1] = (select auth.uid())::text',
    bucket);

  execute 'drop policy if exists input_assets_objects_select_own on storage.objects';
  execute format(
    'create policy input_assets_objects_select_own on storage.objects '
    'for select to authenticated using (%s)', own);

  execute 'drop policy if exists input_assets_objects_insert_own on storage.objects';
  execute format(
    'create policy input_assets_objects_insert_own on storage.objects '
    'for insert to authenticated with check (%s)', own);

  execute 'drop policy if exists input_assets_objects_update_own on storage.objects';
  execute format(
    'create policy input_assets_objects_update_own on storage.objects '
    'for update to authenticated using (%s) with check (%s)', own, own);

  execute 'drop policy if exists input_assets_objects_delete_own on storage.objects';
  execute format(
    'create policy input_assets_objects_delete_own on storage.objects '
    'for delete to authenticated using (%s)', own);

  raise notice '0002_input_storage_policies: owner-folder policies on storage.objects for bucket %', bucket;
end
$migration$;
