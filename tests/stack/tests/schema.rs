//! The schema on the live stack database: bootstrap + migrations apply again
//! without error and without changing anything, and the result is the designed
//! one (columns, constraints, indexes, trigger, RLS policies, grants, roles,
//! the `auth.*` claim readers).

mod common;

/// Everything about the schema a migration could change, as text.
const SNAPSHOT_SQL: &str = r#"
select 'col', table_schema, table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
  from information_schema.columns where table_schema in ('public', 'auth') order by 2, 3, 4;
select 'con', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  from pg_constraint where connamespace in ('public'::regnamespace, 'auth'::regnamespace) order by 2, 3;
select 'idx', schemaname, tablename, indexname, indexdef
  from pg_indexes where schemaname in ('public', 'auth') order by 2, 3, 4;
select 'pol', tablename, policyname, permissive, cmd, roles::text, coalesce(qual, ''), coalesce(with_check, '')
  from pg_policies order by 2, 3;
select 'trg', tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
  from pg_trigger where not tgisinternal order by 2, 3;
select 'rls', relname, relrowsecurity, relforcerowsecurity
  from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' order by 2;
select 'acl', table_schema, table_name, grantee, string_agg(privilege_type, ',' order by privilege_type)
  from information_schema.role_table_grants where table_schema in ('public', 'auth')
  group by 2, 3, 4 order by 2, 3, 4;
select 'fn', p.oid::regprocedure::text, pg_get_userbyid(p.proowner), pg_get_functiondef(p.oid), coalesce(p.proacl::text, '')
  from pg_proc p where pronamespace in ('public'::regnamespace, 'auth'::regnamespace) order by 2;
select 'role', rolname, rolcanlogin, rolinherit, rolbypassrls, rolcreaterole
  from pg_roles where rolname in ('anon', 'authenticated', 'service_role', 'authenticator', 'supabase_auth_admin') order by 2;
select 'member', r.rolname, m.rolname
  from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member order by 2, 3;
select 'ext', extname, extnamespace::regnamespace::text from pg_extension order by 2;
select 'nsp', nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '') from pg_namespace
  where nspname in ('public', 'auth', 'extensions') order by 2;
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
