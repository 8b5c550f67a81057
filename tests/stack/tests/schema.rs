//! The schema on the live stack database: bootstrap + migrations apply again
//! without error and without changing anything, and the result is the designed
//! one (columns, constraints, indexes, trigger, RLS policies, grants, roles,
//! the `auth.*` claim readers), and the owner-folder Storage policies of
//! `migrations/0002_input_storage_policies.sql` on the bootstrap's `storage.objects`.

mod common;

/// Everything about the schema a migration could change, as text.
const SNAPSHOT_SQL: &str = r#"
select 'col', table_schema, table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
  from information_schema.columns where table_schema in ('public', 'auth', 'storage') order by 2, 3, 4;
select 'con', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  from pg_constraint where connamespace in ('public'::regnamespace, 'auth'::regnamespace, 'storage'::regnamespace) order by 2, 3;
select 'idx', schemaname, tablename, indexname, indexdef
  from pg_indexes where schemaname in ('public', 'auth', 'storage') order by 2, 3, 4;
select 'pol', tablename, policyname, permissive, cmd, roles::text, coalesce(qual, ''), coalesce(with_check, '')
  from pg_policies order by 2, 3;
select 'trg', tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
  from pg_trigger where not tgisinternal order by 2, 3;
select 'rls', relname, relrowsecurity, relforcerowsecurity
  from pg_class where relnamespace in ('public'::regnamespace, 'storage'::regnamespace) and relkind = 'r' order by 2;
select 'acl', table_schema, table_name, grantee, string_agg(privilege_type, ',' order by privilege_type)
  from information_schema.role_table_grants where table_schema in ('public', 'auth', 'storage')
  group by 2, 3, 4 order by 2, 3, 4;
select 'fn', p.oid::regprocedure::text, pg_get_userbyid(p.proowner), pg_get_functiondef(p.oid), coalesce(p.proacl::text, '')
  from pg_proc p where pronamespace in ('public'::regnamespace, 'auth'::regnamespace, 'storage'::regnamespace) order by 2;
select 'role', rolname, rolcanlogin, rolinherit, rolbypassrls, rolcreaterole
  from pg_roles where rolname in ('anon', 'authenticated', 'service_role', 'authenticator', 'supabase_auth_admin', 'supabase_storage_admin') order by 2;
select 'member', r.rolname, m.rolname
  from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member order by 2, 3;
select 'ext', extname, extnamespace::regnamespace::text from pg_extension order by 2;
select 'nsp', nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '') from pg_namespace
  where nspname in ('public', 'auth', 'extensions', 'storage') order by 2;
select 'defacl', defaclrole::regrole::text, coalesce(defaclnamespace::regnamespace::text, ''), defaclobjtype, defaclacl::text
  from pg_default_acl order by 2, 3, 4;
"#;

#[tokio::test]
async fn migrations_apply_twice_and_the_schema_is_as_designed() {
    let stack = common::start("schema").await;
    let before = stack.psql(SNAPSHOT_SQL).await.expect("snapshot");

    // Run bootstrap and every migration again on the live database, twice.
    for _ in 0..2 {
        let files = stack
            .reapply_schema()
            .await
            .expect("re-applying the schema");
        assert!(files[0].ends_with("migrations/0001_init.sql"), "{files:?}");
        assert!(
            files[1].ends_with("migrations/0002_input_storage_policies.sql"),
            "{files:?}"
        );
    }
    let after = stack.psql(SNAPSHOT_SQL).await.expect("snapshot");
    assert_eq!(before, after, "a second run changed the schema");

    let q = |sql: &'static str| {
        let stack = &stack;
        async move { stack.psql(sql).await.expect(sql) }
    };

    // RLS on all three tables.
    assert_eq!(
        q("select string_agg(relname || '=' || relrowsecurity, ',' order by relname) from pg_class \
           where relnamespace = 'public'::regnamespace and relkind = 'r'")
        .await,
        "concept_images=true,input_assets=true,models=true"
    );
    // Exactly these policies: users manage input_assets, only read the others.
    assert_eq!(
        q("select string_agg(tablename || ':' || policyname || ':' || cmd || ':' || roles::text, E'\\n' \
           order by tablename, policyname) from pg_policies where schemaname = 'public'")
        .await,
        "concept_images:concept_images_select_own:SELECT:{authenticated}\n\
         input_assets:input_assets_delete_own:DELETE:{authenticated}\n\
         input_assets:input_assets_insert_own:INSERT:{authenticated}\n\
         input_assets:input_assets_select_own:SELECT:{authenticated}\n\
         input_assets:input_assets_update_own:UPDATE:{authenticated}\n\
         models:models_select_own:SELECT:{authenticated}"
    );
    // The policies call auth.uid() once per statement (initplan), not per row.
    assert_eq!(
        q(
            "select count(*) from pg_policies where schemaname = 'public' \
           and coalesce(qual, with_check) not like '%SELECT auth.uid()%'"
        )
        .await,
        "0"
    );
    // Nullability: models.prompt and input_assets.prompt NULL, concept_images.prompt NOT NULL.
    assert_eq!(
        q("select string_agg(table_name || '.' || column_name || '=' || is_nullable, ',' order by table_name) \
           from information_schema.columns where table_schema = 'public' and column_name = 'prompt'")
        .await,
        "concept_images.prompt=NO,input_assets.prompt=YES,models.prompt=YES"
    );
    // Every table has updated_at NOT NULL, a status CHECK and the trigger.
    assert_eq!(
        q(
            "select count(*) from information_schema.columns where table_schema = 'public' \
           and column_name = 'updated_at' and is_nullable = 'NO'"
        )
        .await,
        "3"
    );
    assert_eq!(
        q(
            "select string_agg(conname, ',' order by conname) from pg_constraint \
           where connamespace = 'public'::regnamespace and contype = 'c'"
        )
        .await,
        "concept_images_status_check,input_assets_status_check,models_status_check"
    );
    assert_eq!(
        q("select string_agg(tgname || ':' || tgfoid::regproc::text, ',' order by tgname) from pg_trigger \
           where not tgisinternal")
        .await,
        "concept_images_set_updated_at:set_updated_at,\
         input_assets_set_updated_at:set_updated_at,\
         models_set_updated_at:set_updated_at"
    );
    // The indexes of SPEC §7.
    let indexes = q(
        "select string_agg(indexdef, E'\\n' order by indexname) from pg_indexes \
                     where schemaname = 'public'",
    )
    .await;
    for expected in [
        "input_assets USING btree (task_id)",
        "input_assets USING btree (user_id, created_at DESC)",
        "concept_images USING btree (task_id)",
        "concept_images USING btree (user_id, created_at DESC)",
        "concept_images USING btree (ai_service_task_id)",
        "models USING btree (task_id)",
        "models USING btree (user_id, created_at DESC)",
        "models USING btree (ai_service_task_id)",
    ] {
        assert!(
            indexes.contains(expected),
            "missing index {expected}:\n{indexes}"
        );
    }
    // user_id references auth.users, ON DELETE SET NULL.
    assert_eq!(
        q("select count(*) from pg_constraint where contype = 'f' and confrelid = 'auth.users'::regclass \
           and confdeltype = 'n'")
        .await,
        "3"
    );
    // Client roles cannot write the worker's tables at all; service_role can.
    assert_eq!(
        q("select string_agg(r || ':' || t || ':' || has_table_privilege(r, 'public.' || t, p)::text, ',' \
             order by r, t) \
           from (values ('authenticated'), ('anon')) as roles(r), \
                (values ('concept_images'), ('models')) as tables(t), \
                (values ('INSERT,UPDATE,DELETE')) as privs(p)")
        .await,
        "anon:concept_images:false,anon:models:false,authenticated:concept_images:false,authenticated:models:false"
    );
    assert_eq!(
        q("select has_table_privilege('service_role', 'public.models', 'INSERT,UPDATE,SELECT') \
             and has_table_privilege('service_role', 'public.concept_images', 'INSERT,UPDATE,SELECT') \
             and has_table_privilege('authenticated', 'public.input_assets', 'SELECT,INSERT,UPDATE,DELETE')")
        .await,
        "t"
    );

    // Roles of supabase-http.md §6.1.
    assert_eq!(
        q("select string_agg(rolname || ':' || rolcanlogin || ':' || rolinherit || ':' || rolbypassrls, ',' \
           order by rolname) from pg_roles where rolname in \
           ('anon', 'authenticated', 'service_role', 'authenticator', 'supabase_auth_admin')")
        .await,
        "anon:false:false:false,authenticated:false:false:false,authenticator:true:false:false,\
         service_role:false:false:true,supabase_auth_admin:true:false:false"
    );
    assert_eq!(
        q(
            "select string_agg(r.rolname, ',' order by r.rolname) from pg_auth_members am \
           join pg_roles r on r.oid = am.roleid where am.member = 'authenticator'::regrole"
        )
        .await,
        "anon,authenticated,service_role"
    );
    assert_eq!(
        q("select string_agg(extname || '@' || extnamespace::regnamespace::text, ',' order by extname) \
           from pg_extension where extname in ('uuid-ossp', 'pgcrypto')")
        .await,
        "pgcrypto@extensions,uuid-ossp@extensions"
    );

    // auth.* read the claims: NULL outside a request; request.jwt.claims (PostgREST
    // 9+); the legacy per-claim settings win; empty strings count as missing.
    assert_eq!(
        q("select concat_ws(',', auth.uid() is null, auth.role() is null, auth.email() is null, auth.jwt() is null)")
            .await,
        "t,t,t,t"
    );
    assert_eq!(
        q("begin; \
           select set_config('request.jwt.claims', \
             '{\"sub\":\"11111111-1111-4111-8111-111111111111\",\"role\":\"authenticated\",\"email\":\"a@x.test\"}', true); \
           select concat_ws(',', auth.uid(), auth.role(), auth.email(), auth.jwt() ->> 'sub'); \
           select set_config('request.jwt.claim.sub', '22222222-2222-4222-8222-222222222222', true); \
           select auth.uid(); \
           select set_config('request.jwt.claim.sub', '', true); \
           select auth.uid(); \
           commit;")
        .await,
        "{\"sub\":\"11111111-1111-4111-8111-111111111111\",\"role\":\"authenticated\",\"email\":\"a@x.test\"}\n\
         11111111-1111-4111-8111-111111111111,authenticated,a@x.test,11111111-1111-4111-8111-111111111111\n\
         22222222-2222-4222-8222-222222222222\n\
         22222222-2222-4222-8222-222222222222\n\
         \n\
         11111111-1111-4111-8111-111111111111"
    );

    // psql errors carry the SQLSTATE (VERBOSITY verbose).
    let err = stack
        .psql("insert into public.models (task_id, status) values ('t', 'done');")
        .await
        .expect_err("status 'done' must be rejected");
    assert!(err.to_string().contains("23514"), "{err}");

    stack.stop().await;
}

const USER_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const USER_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

/// `sql` run as the API role `authenticated` with user `sub`'s claims (as PostgREST and Storage
/// set them per request), in one transaction that ends with `end` (`commit` or `rollback`).
fn as_user(sub: &str, sql: &str, end: &str) -> String {
    format!(
        "begin; set local role authenticated; \
         select set_config('request.jwt.claims', '{{\"sub\":\"{sub}\",\"role\":\"authenticated\"}}', true) is not null; \
         {sql} {end};"
    )
}

/// The storage policies as `name:cmd:roles:using:check`, one a line.
const STORAGE_POLICIES_SQL: &str =
    "select string_agg(policyname || ':' || cmd || ':' || roles::text || ':' \
     || coalesce(qual, '') || ':' || coalesce(with_check, ''), E'\\n' order by policyname) \
     from pg_policies where schemaname = 'storage'";

#[tokio::test]
async fn input_storage_policies_give_users_their_own_folder_of_the_inputs_bucket() {
    let stack = common::start("storage-policies").await;
    let inputs = stack::INPUT_BUCKET;
    let migration = std::fs::read_to_string(
        stack::default_repo_root().join("migrations/0002_input_storage_policies.sql"),
    )
    .expect("reading migration 0002");

    // The bootstrap's storage.objects is Supabase's: RLS on, path_tokens generated, and
    // storage.foldername() drops the last element.
    assert_eq!(
        stack
            .psql(
                "select relrowsecurity from pg_class where oid = 'storage.objects'::regclass; \
                 select storage.foldername('u/in/a.png')::text, storage.foldername('a.png')::text, \
                   (storage.foldername('a.png'))[1] is null; \
                 select has_table_privilege(r, 'storage.objects', 'SELECT,INSERT,UPDATE,DELETE') \
                   from unnest(array['anon', 'authenticated', 'service_role']) r order by r;"
            )
            .await
            .unwrap(),
        "t\n{u,in}|{}|t\nt\nt\nt"
    );

    // The four owner-folder policies exist, name the inputs bucket and call auth.uid() once
    // per statement; they survive re-running every migration unchanged.
    let own = format!(
        "((bucket_id = '{inputs}'::text) AND ((storage.foldername(name))[1] = \
         (( SELECT auth.uid() AS uid))::text))"
    );
    let expected = format!(
        "input_assets_objects_delete_own:DELETE:{{authenticated}}:{own}:\n\
         input_assets_objects_insert_own:INSERT:{{authenticated}}::{own}\n\
         input_assets_objects_select_own:SELECT:{{authenticated}}:{own}:\n\
         input_assets_objects_update_own:UPDATE:{{authenticated}}:{own}:{own}"
    );
    assert_eq!(stack.psql(STORAGE_POLICIES_SQL).await.unwrap(), expected);
    stack.reapply_schema().await.expect("re-applying");
    stack
        .psql(&migration)
        .await
        .expect("0002 again, outside a transaction");
    assert_eq!(stack.psql(STORAGE_POLICIES_SQL).await.unwrap(), expected);

    // Rows: A and B each have an input; A also has a row in another private bucket.
    stack
        .psql(&format!(
            "insert into storage.buckets (id, name, public) values \
               ('{inputs}', '{inputs}', false), ('other_private', 'other_private', false), \
               ('public_assets', 'public_assets', true) on conflict do nothing; \
             insert into storage.objects (bucket_id, name) values \
               ('{inputs}', '{USER_A}/in/a.png'), ('{inputs}', '{USER_B}/in/b.png'), \
               ('other_private', '{USER_A}/x.png'), ('public_assets', '{USER_A}/p.png');"
        ))
        .await
        .unwrap();
    let visible =
        "select coalesce(string_agg(bucket_id || '/' || name, ',' order by bucket_id, name), '') \
                   from storage.objects;";

    // A sees only A's inputs (not B's, not A's rows in other buckets, public or not).
    assert_eq!(
        stack
            .psql(&as_user(USER_A, visible, "rollback"))
            .await
            .unwrap(),
        format!("t\n{inputs}/{USER_A}/in/a.png")
    );
    // A inserts under A/… in the inputs bucket, and nowhere else.
    stack
        .psql(&as_user(
            USER_A,
            &format!("insert into storage.objects (bucket_id, name) values ('{inputs}', '{USER_A}/in/c.png');"),
            "commit",
        ))
        .await
        .expect("A writes in A's folder");
    for (bucket, name) in [
        (inputs, format!("{USER_B}/in/c.png")),
        (inputs, "c.png".to_string()),
        (inputs, format!("x/{USER_A}/c.png")),
        ("other_private", format!("{USER_A}/c.png")),
        ("public_assets", format!("{USER_A}/c.png")),
    ] {
        let err = stack
            .psql(&as_user(
                USER_A,
                &format!(
                    "insert into storage.objects (bucket_id, name) values ('{bucket}', '{name}');"
                ),
                "rollback",
            ))
            .await
            .expect_err("A must not write there");
        assert!(err.to_string().contains("42501"), "{bucket}/{name}: {err}");
    }
    // A cannot move an own input out of the folder (update's WITH CHECK), nor touch rows of
    // others or of other buckets (invisible: zero rows).
    let err = stack
        .psql(&as_user(
            USER_A,
            &format!(
                "update storage.objects set name = '{USER_B}/in/moved.png' \
                 where name = '{USER_A}/in/a.png';"
            ),
            "rollback",
        ))
        .await
        .expect_err("moving out of the folder");
    assert!(err.to_string().contains("42501"), "{err}");
    assert_eq!(
        stack
            .psql(&as_user(
                USER_A,
                &format!(
                    "with u as (update storage.objects set version = 'v' \
                       where name not like '{USER_A}/in/%' or bucket_id <> '{inputs}' returning 1) \
                     select count(*) from u; \
                     with d as (delete from storage.objects \
                       where name not like '{USER_A}/in/%' or bucket_id <> '{inputs}' returning 1) \
                     select count(*) from d; \
                     with d as (delete from storage.objects where name = '{USER_A}/in/c.png' \
                       returning 1) select count(*) from d;"
                ),
                "rollback",
            ))
            .await
            .unwrap(),
        "t\n0\n0\n1"
    );

    // B sees only B's input, none of A's (including the one A just wrote).
    assert_eq!(
        stack
            .psql(&as_user(USER_B, visible, "rollback"))
            .await
            .unwrap(),
        format!("t\n{inputs}/{USER_B}/in/b.png")
    );
    // anon sees nothing; service_role (BYPASSRLS) sees every row.
    assert_eq!(
        stack
            .psql(&format!("begin; set local role anon; {visible} rollback;"))
            .await
            .unwrap(),
        ""
    );
    assert_eq!(
        stack
            .psql("begin; set local role service_role; select count(*) from storage.objects; rollback;")
            .await
            .unwrap(),
        "5"
    );

    // The setting names the bucket: with makeit3d.input_assets_bucket = custom_inputs, the
    // policies name it instead, and A's folder moves there.
    let custom = stack
        .psql(&format!(
            "begin; set local makeit3d.input_assets_bucket = 'custom_inputs'; {migration} \
             insert into storage.buckets (id, name) values ('custom_inputs', 'custom_inputs'); \
             {STORAGE_POLICIES_SQL}; \
             set local role authenticated; \
             select set_config('request.jwt.claims', '{{\"sub\":\"{USER_A}\"}}', true) is not null; \
             insert into storage.objects (bucket_id, name) values ('custom_inputs', '{USER_A}/in/z.png'); \
             {visible} rollback;"
        ))
        .await
        .expect("0002 with a custom bucket");
    assert_eq!(
        custom,
        format!(
            "{}\nt\ncustom_inputs/{USER_A}/in/z.png",
            expected.replace(&format!("'{inputs}'"), "'custom_inputs'")
        )
    );
    // (rolled back: the default bucket's policies are in place again)
    assert_eq!(stack.psql(STORAGE_POLICIES_SQL).await.unwrap(), expected);

    // The guard: without storage.objects the migration does nothing and does not fail.
    assert_eq!(
        stack
            .psql(&format!(
                "begin; alter table storage.objects rename to objects_elsewhere; \
                 drop policy input_assets_objects_select_own on storage.objects_elsewhere; \
                 drop policy input_assets_objects_insert_own on storage.objects_elsewhere; \
                 drop policy input_assets_objects_update_own on storage.objects_elsewhere; \
                 drop policy input_assets_objects_delete_own on storage.objects_elsewhere; \
                 {migration} \
                 select count(*) from pg_policies where schemaname = 'storage'; rollback;"
            ))
            .await
            .expect("0002 without storage.objects"),
        "0"
    );

    stack.stop().await;
}
