//! Row-level security and constraints seen through the REAL PostgREST behind
//! the gateway (`{supabase_url}/rest/v1`), the way the worker and the app call
//! them: each user sees only their rows; users write their own input_assets
//! only and never concept_images / models; the service role writes everything,
//! idempotently with `resolution=ignore-duplicates`; the CHECK, NOT NULL and
//! foreign-key rules; `updated_at` maintained by the trigger.

mod common;

use common::{rest, Caller, Reply};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const REPR: Option<&str> = Some("return=representation");

fn assert_rls_denied(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    assert_eq!(reply.code(), Some("42501"), "{what}: {reply:?}");
}

#[tokio::test]
async fn postgrest_enforces_ownership_and_constraints() {
    let stack = common::start("rest").await;
    let service = Caller::service(&stack);
    let anon = Caller::anon(&stack);
    let (alice, alice_token) = stack.create_user("alice@example.com").await.expect("alice");
    let (bob, bob_token) = stack.create_user("bob@example.com").await.expect("bob");
    let as_alice = Caller::user(&stack, &alice_token);
    let as_bob = Caller::user(&stack, &bob_token);

    // --- seed one row per user and table with the service key ---------------
    let mut ids = std::collections::HashMap::new();
    for (owner, name) in [(alice, "alice"), (bob, "bob")] {
        let input_id = Uuid::new_v4();
        let concept_id = Uuid::new_v4();
        let model_id = Uuid::new_v4();
        let task = format!("task-{name}");
        let r = rest(&stack, &service, Method::POST, "input_assets", Some(json!({
            "id": input_id, "task_id": task, "user_id": owner,
            "input_asset_type": "uploaded_photo",
            "asset_url": format!("{}/storage/v1/object/{}/{owner}/in.png", stack.supabase_url, stack.input_bucket),
        })), REPR).await;
        assert_eq!(r.status, 201, "{r:?}");
        let r = rest(
            &stack,
            &service,
            Method::POST,
            "concept_images",
            Some(json!({
                "id": concept_id, "task_id": task, "user_id": owner,
                "source_input_asset_id": input_id, "prompt": "a cat", "style": "clay",
            })),
            REPR,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.rows()[0]["status"], "pending");
        assert_eq!(r.rows()[0]["asset_url"], Value::Null);
        let r = rest(
            &stack,
            &service,
            Method::POST,
            "models",
            Some(json!({
                "id": model_id, "task_id": task, "user_id": owner,
                "source_concept_image_id": concept_id, "prompt": null,
            })),
            REPR,
        )
        .await;
        assert_eq!(r.status, 201, "models.prompt accepts NULL: {r:?}");
        ids.insert(name, (input_id, concept_id, model_id));
    }
    let (alice_input, alice_concept, alice_model) = ids["alice"];
    let (bob_input, _, _) = ids["bob"];

    // --- reads: each user sees exactly their own rows --------------------------
    for table in ["input_assets", "concept_images", "models"] {
        for (caller, owner) in [(&as_alice, alice), (&as_bob, bob)] {
            let r = rest(
                &stack,
                caller,
                Method::GET,
                &format!("{table}?select=user_id,task_id"),
                None,
                None,
            )
            .await;
            assert_eq!(r.status, 200, "{table}: {r:?}");
            assert_eq!(r.rows().len(), 1, "{table}: {r:?}");
            assert_eq!(r.rows()[0]["user_id"], owner.to_string(), "{table}: {r:?}");
        }
        // Filtering on the other user's rows finds nothing (not an error).
        let r = rest(
            &stack,
            &as_alice,
            Method::GET,
            &format!("{table}?user_id=eq.{bob}"),
            None,
            None,
        )
        .await;
        assert_eq!((r.status, r.rows().len()), (200, 0), "{table}: {r:?}");
        // No token: anon sees nothing.
        let r = rest(&stack, &anon, Method::GET, table, None, None).await;
        assert_eq!(
            (r.status, r.rows().len()),
            (200, 0),
            "{table} as anon: {r:?}"
        );
        // The service role sees everything.
        let r = rest(&stack, &service, Method::GET, table, None, None).await;
        assert_eq!(r.rows().len(), 2, "{table} as service: {r:?}");
    }

    // --- input_assets: users manage their own ------------------------------------
    let own = Uuid::new_v4();
    let r = rest(&stack, &as_alice, Method::POST, "input_assets", Some(json!({
        "id": own, "task_id": "task-alice-2", "user_id": alice, "input_asset_type": "text_prompt",
        "prompt": "a robot",
    })), REPR).await;
    assert_eq!(r.status, 201, "own insert: {r:?}");
    let r = rest(
        &stack,
        &as_alice,
        Method::POST,
        "input_assets",
        Some(json!({
            "task_id": "task-x", "user_id": bob, "input_asset_type": "text_prompt",
        })),
        REPR,
    )
    .await;
    assert_rls_denied(&r, 403, "insert for another user");
    let r = rest(
        &stack,
        &anon,
        Method::POST,
        "input_assets",
        Some(json!({
            "task_id": "task-x", "input_asset_type": "text_prompt",
        })),
        REPR,
    )
    .await;
    assert_rls_denied(&r, 401, "anon insert");

    let r = rest(
        &stack,
        &as_alice,
        Method::PATCH,
        &format!("input_assets?id=eq.{alice_input}"),
        Some(json!({"status": "complete"})),
        REPR,
    )
    .await;
    assert_eq!((r.status, r.rows().len()), (200, 1), "own update: {r:?}");
    assert_eq!(r.rows()[0]["status"], "complete");
    // Another user's row: not visible, so nothing is updated (no error).
    let r = rest(
        &stack,
        &as_alice,
        Method::PATCH,
        &format!("input_assets?id=eq.{bob_input}"),
        Some(json!({"status": "failed"})),
        REPR,
    )
    .await;
    assert_eq!(
        (r.status, r.rows().len()),
        (200, 0),
        "update of bob's row: {r:?}"
    );
    let r = rest(
        &stack,
        &service,
        Method::GET,
        &format!("input_assets?id=eq.{bob_input}&select=status"),
        None,
        None,
    )
    .await;
    assert_eq!(r.rows()[0]["status"], "pending", "bob's row unchanged");
    // Giving one's row away fails the WITH CHECK.
    let r = rest(
        &stack,
        &as_alice,
        Method::PATCH,
        &format!("input_assets?id=eq.{own}"),
        Some(json!({"user_id": bob})),
        REPR,
    )
    .await;
    assert_rls_denied(&r, 403, "moving a row to another user");
    // Delete: another user's row is untouched, one's own goes.
    let r = rest(
        &stack,
        &as_alice,
        Method::DELETE,
        &format!("input_assets?id=eq.{bob_input}"),
        None,
        REPR,
    )
    .await;
    assert_eq!(
        (r.status, r.rows().len()),
        (200, 0),
        "delete of bob's row: {r:?}"
    );
    let r = rest(
        &stack,
        &as_alice,
        Method::DELETE,
        &format!("input_assets?id=eq.{own}"),
        None,
        REPR,
    )
    .await;
    assert_eq!((r.status, r.rows().len()), (200, 1), "own delete: {r:?}");

    // --- concept_images / models: read-only for users --------------------------
    for (table, row) in [("concept_images", alice_concept), ("models", alice_model)] {
        let r = rest(
            &stack,
            &as_alice,
            Method::POST,
            table,
            Some(json!({
                "task_id": "task-alice", "user_id": alice, "prompt": "p",
            })),
            REPR,
        )
        .await;
        assert_rls_denied(&r, 403, &format!("user insert into {table}"));
        let r = rest(
            &stack,
            &as_alice,
            Method::PATCH,
            &format!("{table}?id=eq.{row}"),
            Some(json!({"status": "complete"})),
            REPR,
        )
        .await;
        assert_rls_denied(&r, 403, &format!("user update of {table}"));
        let r = rest(
            &stack,
            &as_alice,
            Method::DELETE,
            &format!("{table}?id=eq.{row}"),
            None,
            None,
        )
        .await;
        assert_rls_denied(&r, 403, &format!("user delete from {table}"));
        let r = rest(
            &stack,
            &anon,
            Method::POST,
            table,
            Some(json!({
                "task_id": "task-alice", "prompt": "p",
            })),
            REPR,
        )
        .await;
        assert_rls_denied(&r, 401, &format!("anon insert into {table}"));
    }

    // --- the worker's idempotent insert ---------------------------------------
    let row_id = Uuid::new_v4();
    let row = json!({"id": row_id, "task_id": "task-alice", "user_id": alice, "prompt": "a cat", "status": "pending"});
    let prefer = Some("resolution=ignore-duplicates,return=representation");
    let first = rest(
        &stack,
        &service,
        Method::POST,
        "concept_images",
        Some(row.clone()),
        prefer,
    )
    .await;
    assert_eq!((first.status, first.rows().len()), (201, 1), "{first:?}");
    let again = rest(
        &stack,
        &service,
        Method::POST,
        "concept_images",
        Some(json!({"id": row_id, "task_id": "task-alice", "user_id": alice, "prompt": "changed"})),
        prefer,
    )
    .await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.body, json!([]), "the duplicate is skipped");
    let r = rest(
        &stack,
        &service,
        Method::GET,
        &format!("concept_images?id=eq.{row_id}&select=prompt"),
        None,
        None,
    )
    .await;
    assert_eq!(r.rows()[0]["prompt"], "a cat");

    // --- constraints --------------------------------------------------------------
    let r = rest(
        &stack,
        &service,
        Method::PATCH,
        &format!("models?id=eq.{alice_model}"),
        Some(json!({"status": "done"})),
        REPR,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (400, Some("23514")),
        "status CHECK: {r:?}"
    );
    for (table, row) in [
        (
            "input_assets",
            json!({"task_id": "t", "input_asset_type": "x", "status": "done"}),
        ),
        (
            "concept_images",
            json!({"task_id": "t", "prompt": "p", "status": "done"}),
        ),
        ("models", json!({"task_id": "t", "status": "done"})),
    ] {
        let r = rest(&stack, &service, Method::POST, table, Some(row), REPR).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("23514")),
            "{table} status CHECK: {r:?}"
        );
    }
    let r = rest(
        &stack,
        &service,
        Method::POST,
        "concept_images",
        Some(json!({"task_id": "t", "prompt": null})),
        REPR,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (400, Some("23502")),
        "concept_images.prompt NOT NULL: {r:?}"
    );
    let r = rest(
        &stack,
        &service,
        Method::POST,
        "models",
        Some(json!({"task_id": "t", "user_id": Uuid::new_v4()})),
        REPR,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (409, Some("23503")),
        "user_id must exist in auth.users: {r:?}"
    );

    // --- updated_at moves on update; created_at does not ---------------------------
    let times_sql = format!(
        "select extract(epoch from created_at) || '|' || extract(epoch from updated_at) \
         from public.models where id = '{alice_model}';"
    );
    let before = stack.psql(&times_sql).await.expect("times");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = rest(
        &stack,
        &service,
        Method::PATCH,
        &format!("models?id=eq.{alice_model}"),
        Some(json!({"status": "processing", "ai_service_task_id": "tripo-1"})),
        REPR,
    )
    .await;
    assert_eq!((r.status, r.rows().len()), (200, 1), "{r:?}");
    let after = stack.psql(&times_sql).await.expect("times");
    let parse = |s: &str| -> (f64, f64) {
        let (c, u) = s.split_once('|').expect("two columns");
        (c.parse().expect("epoch"), u.parse().expect("epoch"))
    };
    let ((created0, updated0), (created1, updated1)) = (parse(&before), parse(&after));
    assert_eq!(created0, created1, "created_at must not move");
    assert!(
        updated1 > updated0,
        "updated_at must move: {before} -> {after}"
    );
    // A client cannot pin updated_at either: the trigger overwrites it.
    let pinned = rest(
        &stack,
        &as_alice,
        Method::PATCH,
        &format!("input_assets?id=eq.{alice_input}"),
        Some(json!({"updated_at": "2000-01-01T00:00:00+00:00"})),
        REPR,
    )
    .await;
    assert!(
        !pinned.rows()[0]["updated_at"]
            .as_str()
            .unwrap_or("")
            .starts_with("2000"),
        "{pinned:?}"
    );

    // --- tokens ------------------------------------------------------------------
    let (_, expired) = stack
        .create_user_with_ttl("late@example.com", -60)
        .await
        .expect("user");
    let r = rest(
        &stack,
        &Caller::user(&stack, &expired),
        Method::GET,
        "models",
        None,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (401, Some("PGRST301")),
        "expired token: {r:?}"
    );
    let r = rest(
        &stack,
        &Caller {
            apikey: "nope".into(),
            bearer: None,
        },
        Method::GET,
        "models",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "the gateway checks apikey: {r:?}");

    stack.stop().await;
}
