//! Every row of the Storage auth table: no header, bad signature, expired, anon, and users in
//! their own folder versus someone else's. The owner-folder policy rules per bucket and per read
//! route are in `policies.rs`.

use fake_storage::jwt;
use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn token_problems() {
    let env = start().await;
    env.create_bucket("b", false).await;

    let r = env
        .http
        .post(env.url("/object/b/a/x.png"))
        .header("apikey", &env.anon) // Storage ignores apikey
        .body("x")
        .send()
        .await
        .unwrap();
    let body = expect_error(r, "400", "InvalidRequest").await;
    assert_eq!(
        body,
        json!({"statusCode":"400","error":"Error","message":"headers must have required property 'authorization'","code":"InvalidRequest"})
    );

    let forged = jwt::service_role_key("not-the-project-secret-xxxxxxxxxxxxxxxxx");
    let body = expect_error(
        env.upload(&forged, "b/a/x.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(
        body,
        json!({"statusCode":"403","error":"Unauthorized","message":"signature verification failed","code":"AccessDenied"})
    );

    let expired = jwt::user_token(SECRET, "u1", -5, None);
    let body = expect_error(
        env.upload(&expired, "b/u1/x.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(body["message"], "\"exp\" claim timestamp check failed");

    let body = expect_error(
        env.upload("garbage", "b/u1/x.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(body["message"], "Invalid Compact JWS");

    // Reads need the header too.
    expect_error(
        env.get(None, "/object/b/a/x.png").await,
        "400",
        "InvalidRequest",
    )
    .await;
    expect_error(env.get(None, "/bucket").await, "400", "InvalidRequest").await;
    env.gw.stop().await;
}

#[tokio::test]
async fn anon_key_reads_public_buckets_only_and_never_writes() {
    let env = start().await;
    env.create_bucket("pub", true).await;
    env.create_bucket("priv", false).await;
    json_ok(env.upload(&env.service, "pub/a/x.png", b"pub").await).await;
    json_ok(env.upload(&env.service, "priv/a/x.png", b"priv").await).await;

    let r = env
        .get(Some(&env.anon), "/object/authenticated/pub/a/x.png")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "pub");
    expect_error(
        env.get(Some(&env.anon), "/object/authenticated/priv/a/x.png")
            .await,
        "404",
        "NoSuchKey",
    )
    .await;
    expect_error(
        env.get(Some(&env.anon), "/object/info/priv/a/x.png").await,
        "404",
        "NoSuchKey",
    )
    .await;

    let body = expect_error(
        env.upload(&env.anon, "pub/a/y.png", b"y").await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(
        body,
        json!({"statusCode":"403","error":"Unauthorized","message":"new row violates row-level security policy","code":"AccessDenied"})
    );
    let r = env
        .req(Method::POST, "/bucket", Some(&env.anon))
        .json(&json!({"id": "x", "name": "x", "public": true}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, "403", "AccessDenied").await;
    assert_eq!(
        body["message"],
        "new row violates row-level security policy"
    );
    // No policy on storage.buckets: anon sees no bucket.
    assert_eq!(
        json_ok(env.get(Some(&env.anon), "/bucket").await).await,
        json!([])
    );
    expect_error(
        env.get(Some(&env.anon), "/bucket/pub").await,
        "404",
        "NoSuchBucket",
    )
    .await;
    env.gw.stop().await;
}

#[tokio::test]
async fn users_own_their_first_folder() {
    // `priv` carries the owner-folder policies (as the inputs bucket does on the stack).
    let env = start_with(|c| c.owner_folder_buckets = vec!["priv".into()]).await;
    env.create_bucket("priv", false).await;
    env.create_bucket("pub", true).await;
    let u1 = env.user("11111111-1111-1111-1111-111111111111");
    let u2 = env.user("22222222-2222-2222-2222-222222222222");
    let own = "priv/11111111-1111-1111-1111-111111111111/in/a.png";

    // Own folder: write, overwrite, read, info, sign, list, delete.
    json_ok(env.upload(&u1, own, b"mine").await).await;
    let r = env
        .req(Method::POST, &format!("/object/{own}"), Some(&u1))
        .header("x-upsert", "true")
        .body("mine2")
        .send()
        .await
        .unwrap();
    json_ok(r).await;
    assert_eq!(
        env.get(Some(&u1), &format!("/object/{own}"))
            .await
            .text()
            .await
            .unwrap(),
        "mine2"
    );
    json_ok(env.get(Some(&u1), &format!("/object/info/{own}")).await).await;
    let r = env
        .req(Method::POST, &format!("/object/sign/{own}"), Some(&u1))
        .json(&json!({"expiresIn": 30}))
        .send()
        .await
        .unwrap();
    assert!(json_ok(r).await["signedURL"].is_string());
    let r = env
        .req(Method::POST, "/object/list/priv", Some(&u1))
        .json(&json!({"prefix": "11111111-1111-1111-1111-111111111111/in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await[0]["name"], "a.png");

    // Someone else's folder: no write, invisible for reads, list shows nothing.
    let body = expect_error(
        env.upload(
            &u2,
            "priv/11111111-1111-1111-1111-111111111111/in/b.png",
            b"x",
        )
        .await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(
        body["message"],
        "new row violates row-level security policy"
    );
    expect_error(
        env.upload(&u1, "priv/in/root.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    expect_error(
        env.upload(&u1, "priv/top.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    expect_error(
        env.get(Some(&u2), &format!("/object/{own}")).await,
        "404",
        "NoSuchKey",
    )
    .await;
    let r = env
        .req(Method::POST, &format!("/object/sign/{own}"), Some(&u2))
        .json(&json!({"expiresIn": 30}))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;
    let r = env
        .req(Method::POST, "/object/list/priv", Some(&u2))
        .json(&json!({"prefix": "11111111-1111-1111-1111-111111111111/in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await, json!([]));
    let r = env
        .req(Method::DELETE, &format!("/object/{own}"), Some(&u2))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;

    // Public bucket: any user reads; it has no owner-folder policy, so no user writes there,
    // not even in their own folder.
    json_ok(
        env.upload(&env.service, "pub/shared/s.png", b"shared")
            .await,
    )
    .await;
    assert_eq!(
        env.get(Some(&u2), "/object/pub/shared/s.png")
            .await
            .text()
            .await
            .unwrap(),
        "shared"
    );
    expect_error(
        env.upload(&u2, "pub/shared/t.png", b"x").await,
        "403",
        "AccessDenied",
    )
    .await;
    expect_error(
        env.upload(&u2, "pub/22222222-2222-2222-2222-222222222222/t.png", b"x")
            .await,
        "403",
        "AccessDenied",
    )
    .await;

    // Users cannot create buckets.
    let r = env
        .req(Method::POST, "/bucket", Some(&u1))
        .json(&json!({"id": "mine", "name": "mine"}))
        .send()
        .await
        .unwrap();
    expect_error(r, "403", "AccessDenied").await;

    let r = env
        .req(Method::DELETE, &format!("/object/{own}"), Some(&u1))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r).await["message"], "Successfully deleted");
    env.gw.stop().await;
}
