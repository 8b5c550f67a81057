//! `/rest/v1`: Kong-style key-auth and the byte-for-byte streaming proxy to PostgREST.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::common::*;

/// A fake upstream that echoes method, raw path+query, headers and body as JSON.
pub(crate) async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
    async fn echo(req: Request<Body>) -> axum::Json<Value> {
        let method = req.method().to_string();
        let uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap();
        axum::Json(json!({
            "method": method,
            "uri": uri,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(echo);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn key_auth() {
    let (upstream, task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    let url = format!("{}/rest/v1/tasks?select=*", env.gw.url());

    let r = env.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "No API key found in request"})
    );
    let r = env
        .http
        .get(&url)
        .header("apikey", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Invalid authentication credentials"})
    );
    // A valid JWT that is not one of the two keys is refused too.
    let r = env
        .http
        .get(&url)
        .header("apikey", env.user("u1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    for key in [&env.anon, &env.service] {
        let r = env
            .http
            .get(&url)
            .header("apikey", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The key in the query string works and is removed before forwarding.
    let r = env
        .http
        .get(format!(
            "{}/rest/v1/tasks?apikey={}&select=a",
            env.gw.url(),
            env.anon
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["uri"], "/tasks?select=a");

    // `/rest/v1` itself matches no route (Kong's route is `/rest/v1/`).
    let r = env
        .http
        .get(format!("{}/rest/v1", env.gw.url()))
        .header("apikey", &env.anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    env.gw.stop().await;
    task.abort();
}

#[tokio::test]
async fn proxies_raw_uri_headers_and_body() {
    let (upstream, task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    let user = env.user("u1");
    let raw =
        "/concept_images?select=a,b&status=in.(x,y)&name=eq.a%20b&or=(a.eq.1,b.eq.2)&x=%2F%2f";
    let r = env
        .http
        .post(format!("{}/rest/v1{raw}", env.gw.url()))
        .header("apikey", &env.service)
        .header("authorization", format!("Bearer {user}"))
        .header("prefer", "resolution=merge-duplicates,return=minimal")
        .header("content-type", "application/json")
        .body(r#"{"task_id":"t-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], raw);
    assert_eq!(echo["body"], r#"{"task_id":"t-1"}"#);
    let h = &echo["headers"];
    assert!(h.get("apikey").is_none(), "apikey forwarded: {h}");
    assert_eq!(h["authorization"], format!("Bearer {user}"));
    assert_eq!(h["prefer"], "resolution=merge-duplicates,return=minimal");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["host"], upstream.trim_start_matches("http://"));

    // Double slashes and dot segments are not normalised.
    let (status, text) = raw_request(
        "PATCH",
        &format!("{}/rest/v1//a/../b/%2E%2E?q=1&f=eq.%2F", env.gw.url()),
        &[("apikey", &env.anon)],
        "[1,2]",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let echo: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["uri"], "//a/../b/%2E%2E?q=1&f=eq.%2F");
    assert_eq!(echo["body"], "[1,2]");

    // A chunked request body streams through.
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("[1,"), Ok("2]")];
    let r = env
        .http
        .delete(format!("{}/rest/v1/t?id=eq.1", env.gw.url()))
        .header("apikey", &env.anon)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "DELETE");
    assert_eq!(echo["body"], "[1,2]");
    assert_eq!(echo["headers"]["transfer-encoding"], "chunked");
    env.gw.stop().await;
    task.abort();
}

#[tokio::test]
async fn upstream_down_is_502() {
    let env = start_with(|c| c.postgrest_url = "http://127.0.0.1:9".to_string()).await;
    let r = env
        .http
        .get(format!("{}/rest/v1/tasks", env.gw.url()))
        .header("apikey", &env.anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    env.gw.stop().await;
}

// ---- `/__fake/rest/*`: fault injection and the request log of the proxy ----

async fn add_rest_fault(env: &Env, fault: Value) {
    let r = env
        .http
        .post(format!("{}/__fake/rest/faults", env.gw.url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn rest_log(env: &Env, query: &str) -> Vec<Value> {
    let r = env
        .http
        .get(format!("{}/__fake/rest/log?{query}", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn post_rest(env: &Env, path: &str, body: &str) -> reqwest::Response {
    env.http
        .post(format!("{}/rest/v1{path}", env.gw.url()))
        .header("apikey", &env.service)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn statuses(log: &[Value]) -> Vec<u64> {
    log.iter().map(|e| e["status"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn rest_fault_with_match_body_hits_only_the_matching_request() {
    let (upstream, task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    add_rest_fault(
        &env,
        json!({
            "method": "POST",
            "path_prefix": "/concept_images",
            "status": 503,
            "times": 2,
            "match_body": "\"task_id\":\"t-2\"",
        }),
    )
    .await;

    // Another task's request, concurrently with the targeted one, goes through.
    let (other, hit) = tokio::join!(
        post_rest(
            &env,
            "/concept_images?on_conflict=id",
            r#"{"task_id":"t-1"}"#
        ),
        post_rest(
            &env,
            "/concept_images?on_conflict=id",
            r#"{"task_id":"t-2"}"#
        ),
    );
    assert_eq!(other.status(), 200);
    assert_eq!(
        other.json::<Value>().await.unwrap()["body"],
        r#"{"task_id":"t-1"}"#
    );
    assert_eq!(hit.status(), 503);
    assert_eq!(
        hit.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        hit.json::<Value>().await.unwrap(),
        json!({"code": "PGRST000", "details": null, "hint": null, "message": "injected fault"})
    );

    // Same body but another path or another method: not matched.
    let r = post_rest(&env, "/tasks", r#"{"task_id":"t-2"}"#).await;
    assert_eq!(r.status(), 200);
    let r = env
        .http
        .patch(format!("{}/rest/v1/concept_images?id=eq.1", env.gw.url()))
        .header("apikey", &env.anon)
        .body(r#"{"task_id":"t-2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The second use, then the rule is spent; the forwarded body is intact.
    let r = post_rest(&env, "/concept_images", r#"{"task_id":"t-2"}"#).await;
    assert_eq!(r.status(), 503);
    let r = post_rest(&env, "/concept_images", r#"{"task_id":"t-2"}"#).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body"], r#"{"task_id":"t-2"}"#);
    assert_eq!(echo["uri"], "/concept_images");

    let log = rest_log(&env, "path_prefix=/concept_images&contains=t-2").await;
    assert_eq!(
        statuses(&log),
        [503, 200, 503, 200],
        "{}",
        Value::from(log.clone())
    );
    assert_eq!(log[0]["path"], "/concept_images?on_conflict=id");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[1]["method"], "PATCH");
    assert_eq!(log[3]["body_excerpt"], r#"{"task_id":"t-2"}"#);
    let log = rest_log(&env, "path_prefix=/concept_images&contains=t-1").await;
    assert_eq!(statuses(&log), [200]);
    env.gw.stop().await;
    task.abort();
}

#[tokio::test]
async fn rest_fault_times_counts_down_and_never_reaches_the_upstream() {
    // No upstream at all: an injected answer proves the request never left the gateway.
    let env = start_with(|c| c.postgrest_url = "http://127.0.0.1:9".to_string()).await;
    add_rest_fault(
        &env,
        json!({"method": "get", "path_prefix": "/tasks?id=eq.t-9", "status": 500, "times": 3}),
    )
    .await;
    let get = |path: &'static str| {
        let env = &env;
        async move {
            env.http
                .get(format!("{}/rest/v1{path}", env.gw.url()))
                .header("apikey", &env.anon)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("/tasks?id=eq.t-8").await.status(), 502);
    for _ in 0..3 {
        let r = get("/tasks?id=eq.t-9&select=*").await;
        assert_eq!(r.status(), 500);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "PGRST000");
    }
    assert_eq!(get("/tasks?id=eq.t-9").await.status(), 502);

    // A custom body is sent verbatim; a status-less rule only delays.
    add_rest_fault(
        &env,
        json!({"path_prefix": "/x", "status": 409, "body": "{\"code\":\"23505\"}"}),
    )
    .await;
    let r = get("/x").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.text().await.unwrap(), r#"{"code":"23505"}"#);
    add_rest_fault(&env, json!({"path_prefix": "/slow", "delay_ms": 300})).await;
    let t = std::time::Instant::now();
    assert_eq!(get("/slow").await.status(), 502);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));

    // Clearing removes pending rules; a bad rule is refused.
    add_rest_fault(
        &env,
        json!({"path_prefix": "/y", "status": 503, "times": 5}),
    )
    .await;
    let r = env
        .http
        .delete(format!("{}/__fake/rest/faults", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("/y").await.status(), 502);
    let r = env
        .http
        .post(format!("{}/__fake/rest/faults", env.gw.url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = env
        .http
        .get(format!("{}/__fake/rest/nope", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let log = rest_log(&env, "path_prefix=/tasks").await;
    assert_eq!(statuses(&log), [502, 500, 500, 500, 502]);
    assert_eq!(log[1]["path"], "/tasks?id=eq.t-9&select=*");
    env.gw.stop().await;
}

#[tokio::test]
async fn rest_log_filters_by_path_and_contains_and_never_logs_keys() {
    let (upstream, task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    post_rest(&env, "/concept_images", r#"[{"task_id":"a-1","n":0}]"#).await;
    post_rest(&env, "/concept_images", r#"[{"task_id":"b-2","n":0}]"#).await;
    post_rest(&env, "/tasks", r#"{"task_id":"a-1"}"#).await;
    // The key in the query string is not logged (nor forwarded).
    let r = env
        .http
        .get(format!(
            "{}/rest/v1/tasks?apikey={}&id=eq.a-1",
            env.gw.url(),
            env.anon
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A large body: the first 2 KiB are kept, and it streams through whole.
    let big = format!(r#"{{"task_id":"c-3","pad":"{}"}}"#, "z".repeat(10_000));
    let r = post_rest(&env, "/big", &big).await;
    assert_eq!(r.json::<Value>().await.unwrap()["body"], big.as_str());

    let all = rest_log(&env, "").await;
    assert_eq!(all.len(), 5);
    for e in &all {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["at_ms", "body_excerpt", "method", "path", "status"],
            "{e}"
        );
        assert!(e["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let text = Value::from(all.clone()).to_string();
    assert!(!text.contains(&env.anon) && !text.contains(&env.service));
    assert_eq!(all[3]["path"], "/tasks?id=eq.a-1");
    assert_eq!(all[3]["body_excerpt"], "");
    assert_eq!(all[4]["body_excerpt"], &big[..2048]);

    let paths = |log: &[Value]| -> Vec<String> {
        log.iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    };
    let log = rest_log(&env, "contains=a-1").await;
    assert_eq!(paths(&log), ["/concept_images", "/tasks"]);
    let log = rest_log(&env, "path_prefix=/concept_images&contains=a-1").await;
    assert_eq!(paths(&log), ["/concept_images"]);
    assert_eq!(log[0]["body_excerpt"], r#"[{"task_id":"a-1","n":0}]"#);
    let log = rest_log(&env, "path_prefix=/tasks").await;
    assert_eq!(paths(&log), ["/tasks", "/tasks?id=eq.a-1"]);
    let log = rest_log(&env, "path_prefix=/tasks&method=get").await;
    assert_eq!(paths(&log), ["/tasks?id=eq.a-1"]);
    // `contains` is form-decoded like every query parameter.
    let log = rest_log(&env, "contains=%22task_id%22%3A%22b-2%22").await;
    assert_eq!(paths(&log), ["/concept_images"]);
    assert!(rest_log(&env, "contains=nothing-like-this")
        .await
        .is_empty());
    env.gw.stop().await;
    task.abort();
}

#[tokio::test]
async fn rest_key_auth_happens_before_faults() {
    let (upstream, task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    add_rest_fault(
        &env,
        json!({"method": "POST", "path_prefix": "/concept_images", "status": 503, "match_body": "t-5"}),
    )
    .await;
    let url = format!("{}/rest/v1/concept_images", env.gw.url());
    let r = env
        .http
        .post(&url)
        .body(r#"{"task_id":"t-5"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "No API key found in request"})
    );
    let r = env
        .http
        .post(&url)
        .header("apikey", "wrong")
        .body(r#"{"task_id":"t-5"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The rule was not used up by the refused requests.
    assert_eq!(
        post_rest(&env, "/concept_images", r#"{"task_id":"t-5"}"#)
            .await
            .status(),
        503
    );
    assert_eq!(
        post_rest(&env, "/concept_images", r#"{"task_id":"t-5"}"#)
            .await
            .status(),
        200
    );
    let log = rest_log(&env, "path_prefix=/concept_images").await;
    assert_eq!(statuses(&log), [401, 401, 503, 200]);
    env.gw.stop().await;
    task.abort();
}
