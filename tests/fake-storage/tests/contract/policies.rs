//! The owner-folder Storage policies of `migrations/0002_input_storage_policies.sql` as the real
//! Storage applies them (`shared/reference/supabase-http.md` §2.4, §2.6): a user reads and writes
//! only `{sub}/…` in the owner-folder (inputs) bucket; a read refused by policy is byte for byte
//! the answer for a missing object, on every read route; other private buckets are the service
//! role's; public buckets are readable by anyone; ES256 / RS256 user tokens count like HS256
//! ones; the signed route refuses tokens for other paths, junk and expired tokens.

use fake_storage::{jwt, DEFAULT_INPUT_BUCKET};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

const A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const INPUTS: &str = DEFAULT_INPUT_BUCKET;
const OTHER: &str = "other_private";
const PUBLIC: &str = "assets";

/// The exact body of a missing object.
const NO_SUCH_KEY: &str =
    r#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#;

/// Every authenticated read route for `bucket/key`: (method, path).
fn read_routes(bucket_key: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, format!("/object/{bucket_key}")),
        (Method::GET, format!("/object/authenticated/{bucket_key}")),
        (Method::HEAD, format!("/object/{bucket_key}")),
        (Method::HEAD, format!("/object/authenticated/{bucket_key}")),
        (Method::GET, format!("/object/info/{bucket_key}")),
        (
            Method::GET,
            format!("/object/info/authenticated/{bucket_key}"),
        ),
    ]
}

/// Status, content type, content length and body of a response.
async fn answer(
    env: &Env,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String, Vec<u8>) {
    let r = env.req(method, path, token).send().await.unwrap();
    let status = r.status().as_u16();
    let header = |name: reqwest::header::HeaderName| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (ct, len) = (header(CONTENT_TYPE), header(CONTENT_LENGTH));
    (status, ct, len, r.bytes().await.unwrap().to_vec())
}

/// Asserts that `token` reading `bucket_key` by every read route gets exactly what a missing
/// object gets by that route (HTTP 400, `NoSuchKey`, same headers, same bytes).
async fn assert_invisible(env: &Env, token: &str, bucket_key: &str, missing_key: &str) {
    let routes = read_routes(bucket_key)
        .into_iter()
        .zip(read_routes(missing_key));
    for ((method, path), (_, missing_path)) in routes {
        let refused = answer(env, method.clone(), &path, Some(token)).await;
        let missing = answer(env, method.clone(), &missing_path, Some(&env.service)).await;
        assert_eq!(refused, missing, "{method} {path} vs {missing_path}");
        assert_eq!(refused.0, 400, "{method} {path}");
        if method == Method::GET {
            assert_eq!(
                String::from_utf8_lossy(&refused.3),
                NO_SUCH_KEY,
                "{method} {path}"
            );
        } else {
            assert_eq!(refused.2, NO_SUCH_KEY.len().to_string(), "{method} {path}");
        }
    }
}

async fn setup() -> Env {
    let env = start().await; // the default owner-folder bucket: DEFAULT_INPUT_BUCKET
    env.create_bucket(INPUTS, false).await;
    env.create_bucket(OTHER, false).await;
    env.create_bucket(PUBLIC, true).await;
    env
}

async fn sign(env: &Env, token: &str, bucket_key: &str) -> reqwest::Response {
    env.req(
        Method::POST,
        &format!("/object/sign/{bucket_key}"),
        Some(token),
    )
    .json(&json!({"expiresIn": 60}))
    .send()
    .await
    .unwrap()
}

async fn list(env: &Env, token: &str, bucket: &str, prefix: &str) -> Value {
    let r = env
        .req(Method::POST, &format!("/object/list/{bucket}"), Some(token))
        .json(&json!({ "prefix": prefix }))
        .send()
        .await
        .unwrap();
    json_ok(r).await
}

#[tokio::test]
async fn owner_reads_own_input_others_get_the_missing_object_answer() {
    let env = setup().await;
    let (ua, ub) = (env.user(A), env.user(B));
    let own = format!("{INPUTS}/{A}/in/a.png");

    // The owner uploads and reads an input by every read route.
    json_ok(env.upload(&ua, &own, b"input-a").await).await;
    for (method, path) in read_routes(&own) {
        let (status, ..) = answer(&env, method.clone(), &path, Some(&ua)).await;
        assert_eq!(status, 200, "{method} {path}");
    }
    assert_eq!(
        env.get(Some(&ua), &format!("/object/authenticated/{own}"))
            .await
            .text()
            .await
            .unwrap(),
        "input-a"
    );

    // Another user: the same answer as a missing object, on every read route.
    assert_invisible(&env, &ub, &own, &format!("{INPUTS}/{A}/in/missing.png")).await;
    // The anon key on the private inputs bucket: the same.
    assert_invisible(
        &env,
        &env.anon,
        &own,
        &format!("{INPUTS}/{A}/in/missing.png"),
    )
    .await;

    // B can neither write into A's folder nor delete, sign or list there.
    expect_error(
        env.upload(&ub, &format!("{INPUTS}/{A}/in/b.png"), b"x")
            .await,
        "403",
        "AccessDenied",
    )
    .await;
    expect_error(sign(&env, &ub, &own).await, "404", "NoSuchKey").await;
    assert_eq!(list(&env, &ub, INPUTS, &format!("{A}/in")).await, json!([]));
    let r = env
        .req(Method::DELETE, &format!("/object/{own}"), Some(&ub))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;
    // A lists and signs its own folder.
    assert_eq!(
        list(&env, &ua, INPUTS, &format!("{A}/in")).await[0]["name"],
        "a.png"
    );
    assert!(json_ok(sign(&env, &ua, &own).await).await["signedURL"].is_string());

    // B's own input stays B's: A does not see it.
    let b_own = format!("{INPUTS}/{B}/in/b.png");
    json_ok(env.upload(&ub, &b_own, b"input-b").await).await;
    assert_invisible(&env, &ua, &b_own, &format!("{INPUTS}/{B}/in/missing.png")).await;
    // The service role reads everything.
    assert_eq!(
        env.get(Some(&env.service), &format!("/object/{b_own}"))
            .await
            .status(),
        200
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn another_private_bucket_is_not_the_users_even_in_their_own_folder() {
    let env = setup().await;
    let ua = env.user(A);
    let other = format!("{OTHER}/{A}/x.png");
    json_ok(env.upload(&env.service, &other, b"other").await).await;

    assert_invisible(&env, &ua, &other, &format!("{OTHER}/{A}/missing.png")).await;
    assert_invisible(&env, &env.anon, &other, &format!("{OTHER}/{A}/missing.png")).await;
    expect_error(
        env.upload(&ua, &format!("{OTHER}/{A}/y.png"), b"y").await,
        "403",
        "AccessDenied",
    )
    .await;
    expect_error(sign(&env, &ua, &other).await, "404", "NoSuchKey").await;
    assert_eq!(list(&env, &ua, OTHER, A).await, json!([]));
    let r = env
        .req(Method::DELETE, &format!("/object/{other}"), Some(&ua))
        .send()
        .await
        .unwrap();
    expect_error(r, "404", "NoSuchKey").await;

    // Copying an own input there is a write there: refused.
    json_ok(
        env.upload(&ua, &format!("{INPUTS}/{A}/in/a.png"), b"a")
            .await,
    )
    .await;
    let r = env
        .req(Method::POST, "/object/copy", Some(&ua))
        .json(
            &json!({"bucketId": INPUTS, "sourceKey": format!("{A}/in/a.png"),
                      "destinationBucket": OTHER, "destinationKey": format!("{A}/copy.png")}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, "403", "AccessDenied").await;
    // …while a copy inside the own folder is fine.
    let r = env
        .req(Method::POST, "/object/copy", Some(&ua))
        .json(
            &json!({"bucketId": INPUTS, "sourceKey": format!("{A}/in/a.png"),
                      "destinationKey": format!("{A}/in/copy.png")}),
        )
        .send()
        .await
        .unwrap();
    json_ok(r).await;
    env.gw.stop().await;
}

#[tokio::test]
async fn public_buckets_are_readable_by_anyone_on_public_and_authenticated_routes() {
    let env = setup().await;
    let ua = env.user(A);
    let key = format!("{PUBLIC}/concepts/t/0.png");
    json_ok(env.upload(&env.service, &key, b"concept").await).await;

    for token in [Some(ua.as_str()), Some(env.anon.as_str())] {
        for (method, path) in read_routes(&key) {
            let (status, ..) = answer(&env, method.clone(), &path, token).await;
            assert_eq!(status, 200, "{method} {path}");
        }
    }
    for path in [
        format!("/object/public/{key}"),
        format!("/object/info/public/{key}"),
    ] {
        assert_eq!(env.get(None, &path).await.status(), 200, "{path}");
    }
    let info = json_ok(env.get(None, &format!("/object/info/public/{key}")).await).await;
    assert_eq!(info["name"], "concepts/t/0.png");
    assert_eq!(info["bucket_id"], PUBLIC);
    assert_eq!(info["size"], 7);

    // The public routes follow the public bucket rules: a private bucket is NoSuchBucket,
    // a missing bucket or object NoSuchKey, for download and info alike.
    json_ok(
        env.upload(&env.service, &format!("{INPUTS}/{A}/in/a.png"), b"a")
            .await,
    )
    .await;
    for route in ["/object/public", "/object/info/public"] {
        expect_error(
            env.get(None, &format!("{route}/{INPUTS}/{A}/in/a.png"))
                .await,
            "404",
            "NoSuchBucket",
        )
        .await;
        expect_error(
            env.get(None, &format!("{route}/nobucket/a.png")).await,
            "404",
            "NoSuchKey",
        )
        .await;
        expect_error(
            env.get(None, &format!("{route}/{PUBLIC}/nope.png")).await,
            "404",
            "NoSuchKey",
        )
        .await;
    }
    // Readable is not writable: no policy lets a user write a public bucket.
    expect_error(
        env.upload(&ua, &format!("{PUBLIC}/{A}/mine.png"), b"x")
            .await,
        "403",
        "AccessDenied",
    )
    .await;
    env.gw.stop().await;
}

#[tokio::test]
async fn es256_and_rs256_user_tokens_count_like_hs256_ones() {
    let env = setup().await;
    let keys = env.gw.keys();
    let iss = env.gw.auth_issuer();
    let es_a = keys.user_token_es256(A, 600, Some(&iss));
    let rs_a = keys.user_token_rs256(A, 600, Some(&iss));
    let es_b = keys.user_token_es256(B, 600, Some(&iss));
    let own = format!("{INPUTS}/{A}/in/es.png");

    json_ok(env.upload(&es_a, &own, b"es").await).await;
    for token in [&es_a, &rs_a, &env.user(A)] {
        let r = env
            .get(Some(token), &format!("/object/authenticated/{own}"))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "es");
    }
    assert_eq!(
        list(&env, &rs_a, INPUTS, &format!("{A}/in")).await[0]["name"],
        "es.png"
    );
    assert_invisible(&env, &es_b, &own, &format!("{INPUTS}/{A}/in/missing.png")).await;
    expect_error(
        env.upload(&es_b, &format!("{INPUTS}/{A}/in/b.png"), b"x")
            .await,
        "403",
        "AccessDenied",
    )
    .await;

    // Refused: another project's key, an expired token, a tampered signature.
    let stranger = fake_storage::SigningKeys::new().user_token_es256(A, 600, Some(&iss));
    let body = expect_error(
        env.get(Some(&stranger), &format!("/object/{own}")).await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(body["message"], "signature verification failed");
    let expired = keys.user_token_es256(A, -5, Some(&iss));
    let body = expect_error(
        env.get(Some(&expired), &format!("/object/{own}")).await,
        "403",
        "AccessDenied",
    )
    .await;
    assert_eq!(body["message"], "\"exp\" claim timestamp check failed");
    let (head, _) = es_a.rsplit_once('.').unwrap();
    let (_, sig_b) = es_b.rsplit_once('.').unwrap();
    expect_error(
        env.get(Some(&format!("{head}.{sig_b}")), &format!("/object/{own}"))
            .await,
        "403",
        "AccessDenied",
    )
    .await;

    // Rotation: the old kid still verifies while published; once revoked it does not.
    let old_kid = keys.es256_kid();
    keys.rotate_es256();
    assert_eq!(
        env.get(Some(&es_a), &format!("/object/{own}"))
            .await
            .status(),
        200
    );
    let rotated = keys.user_token_es256(A, 600, Some(&iss));
    assert_eq!(
        env.get(Some(&rotated), &format!("/object/{own}"))
            .await
            .status(),
        200
    );
    assert!(keys.revoke_es256(&old_kid));
    expect_error(
        env.get(Some(&es_a), &format!("/object/{own}")).await,
        "403",
        "AccessDenied",
    )
    .await;
    env.gw.stop().await;
}

#[tokio::test]
async fn signed_route_refuses_other_paths_junk_and_expired_tokens() {
    let env = setup().await;
    let ua = env.user(A);
    let own = format!("{INPUTS}/{A}/in/a.png");
    let sibling = format!("{INPUTS}/{A}/in/b.png");
    json_ok(env.upload(&ua, &own, b"input-a").await).await;
    json_ok(env.upload(&ua, &sibling, b"input-b").await).await;
    let signed = json_ok(sign(&env, &ua, &own).await).await["signedURL"]
        .as_str()
        .unwrap()
        .to_string();
    let token = signed.split("token=").nth(1).unwrap().to_string();

    // The URL itself: GET and HEAD without Authorization.
    let r = env.get(None, &signed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "input-a");
    let (status, _, len, body) = answer(&env, Method::HEAD, &signed, None).await;
    assert_eq!((status, len.as_str(), body.len()), (200, "7", 0));

    let expired = jwt::sign(
        &json!({"url": own, "iat": jwt::now_unix() - 120, "exp": jwt::now_unix() - 60}),
        SECRET,
    );
    let forged = jwt::sign(
        &json!({"url": own, "exp": jwt::now_unix() + 60}),
        "not-the-project-secret-xxxxxxxxxxxxxxxxxxxx",
    );
    let cases: Vec<(String, Value)> = vec![
        // A token minted for another path.
        (
            format!("/object/sign/{sibling}?token={token}"),
            json!({"statusCode":"400","error":"InvalidSignature","message":"The url do not match the signature","code":"InvalidSignature"}),
        ),
        // A user's access token is no signed-URL token (no `url` claim).
        (
            format!("/object/sign/{own}?token={ua}"),
            json!({"statusCode":"400","error":"InvalidSignature","message":"The url do not match the signature","code":"InvalidSignature"}),
        ),
        // Junk.
        (
            format!("/object/sign/{own}?token=junk"),
            json!({"statusCode":"400","error":"InvalidJWT","message":"Invalid Compact JWS","code":"InvalidJWT"}),
        ),
        // Expired.
        (
            format!("/object/sign/{own}?token={expired}"),
            json!({"statusCode":"400","error":"InvalidJWT","message":"\"exp\" claim timestamp check failed","code":"InvalidJWT"}),
        ),
        // Signed with another secret.
        (
            format!("/object/sign/{own}?token={forged}"),
            json!({"statusCode":"400","error":"InvalidJWT","message":"signature verification failed","code":"InvalidJWT"}),
        ),
    ];
    for (path, expected) in cases {
        let r = env.get(None, &path).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), expected, "{path}");
        let (status, ..) = answer(&env, Method::HEAD, &path, None).await;
        assert_eq!(status, 400, "HEAD {path}");
    }
    env.gw.stop().await;
}
