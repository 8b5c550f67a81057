//! `/rest/v1`: Kong-style key-auth and the byte-for-byte streaming proxy to PostgREST.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

use crate::common::*;

/// A fake upstream that echoes method, raw path+query, headers and body as JSON.
async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
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
