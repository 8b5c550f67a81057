//! Chaos mode and outages of the gateway: the rate holds for a fixed seed, each kind looks like
//! the real service's failure, control routes are never faulted, outages end on time.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;
use crate::rest::echo_server;

async fn control(env: &Env, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req = env.http.request(method, format!("{}{path}", env.gw.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    json_ok(req.send().await.unwrap()).await
}

/// A storage download with a 3 s client timeout: (status, body) or the network error.
async fn download(env: &Env, path: &str) -> Result<(u16, bytes::Bytes), String> {
    let r = env
        .req(Method::GET, path, Some(&env.service))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".into()
            } else {
                e.to_string()
            }
        })?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

async fn rest_get(env: &Env) -> Result<(u16, String), String> {
    let r = env
        .http
        .get(format!("{}/rest/v1/models?select=id", env.gw.url()))
        .header("apikey", &env.service)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".into()
            } else {
                e.to_string()
            }
        })?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn storage_rate_is_respected_and_each_kind_looks_like_storage() {
    let env = start().await;
    env.create_bucket("b", true).await;
    let payload = vec![9u8; 100_000];
    assert_eq!(
        env.upload(&env.service, "b/x.png", &payload).await.status(),
        200
    );

    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(json!({"rate": 0.2, "seed": 3, "kinds": ["5xx", "429", "reset"]})),
    )
    .await;
    let mut faulted = 0u64;
    for _ in 0..300 {
        match download(&env, "/object/b/x.png").await {
            Ok((200, body)) => assert_eq!(body.len(), payload.len()),
            Ok((500 | 502 | 503 | 429 | 400, _)) | Err(_) => faulted += 1,
            Ok((s, _)) => panic!("unexpected status {s}"),
        }
        // Control routes are never faulted.
        control(
            &env,
            Method::GET,
            "/__fake/storage/log?path_prefix=/nothing",
            None,
        )
        .await;
    }
    let stats = control(&env, Method::DELETE, "/__fake/storage/chaos", None).await;
    assert_eq!(stats["seen"], 300, "{stats}");
    assert_eq!(stats["faulted"], faulted, "{stats}");
    assert!((40..=80).contains(&faulted), "{faulted} of 300 at rate 0.2");

    let set = |kind: &str| json!({"rate": 1.0, "seed": 1, "kinds": [kind], "hold_ms": 1500, "slow_ms": 300});
    // 5xx keeps its own status; 429 comes the Storage way (HTTP 400, "429" in the body) or as
    // the gateway's 429 with Retry-After.
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(set("5xx")),
    )
    .await;
    for _ in 0..6 {
        let r = env.get(Some(&env.service), "/object/b/x.png").await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        match status {
            500 => assert_eq!(
                (v["statusCode"].as_str(), v["code"].as_str()),
                (Some("500"), Some("InternalError"))
            ),
            502 | 503 => assert!(v["message"].is_string(), "{v}"),
            s => panic!("unexpected {s} {v}"),
        }
    }
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(set("429")),
    )
    .await;
    for _ in 0..6 {
        let r = env.get(Some(&env.service), "/object/b/x.png").await;
        match r.status().as_u16() {
            400 => {
                let v: Value = r.json().await.unwrap();
                assert_eq!(
                    (v["statusCode"].as_str(), v["code"].as_str()),
                    (Some("429"), Some("SlowDown"))
                );
            }
            429 => assert!(r.headers().get("retry-after").is_some()),
            s => panic!("unexpected {s}"),
        }
    }
    // reset: a network error; a reset after the work: the upload is stored, its answer lost.
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(set("reset")),
    )
    .await;
    for i in 0..6 {
        let key = format!("b/reset-{i}.png");
        let r = env
            .req(Method::POST, &format!("/object/{key}"), Some(&env.service))
            .header("content-type", "image/png")
            .body(vec![1u8; 10])
            .send()
            .await;
        let lost = match r {
            Err(_) => true,
            Ok(r) => r.bytes().await.is_err(),
        };
        assert!(lost, "reset must be a network error");
    }
    control(&env, Method::DELETE, "/__fake/storage/chaos", None).await;
    let mut stored = 0;
    for i in 0..6 {
        if env
            .get(Some(&env.service), &format!("/object/b/reset-{i}.png"))
            .await
            .status()
            == 200
        {
            stored += 1;
        }
    }
    assert!(
        stored > 0 && stored < 6,
        "{stored} of 6 resets struck after the upload"
    );
    // timeout: no answer until the client gives up; then 504 after hold_ms.
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(json!({"rate": 1.0, "kinds": ["timeout"], "hold_ms": 10000})),
    )
    .await;
    assert_eq!(
        download(&env, "/object/b/x.png").await.unwrap_err(),
        "timeout"
    );
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(set("timeout")),
    )
    .await;
    assert_eq!(download(&env, "/object/b/x.png").await.unwrap().0, 504);
    // slow and slow_body: late, and every byte.
    for kind in ["slow", "slow_body"] {
        control(&env, Method::POST, "/__fake/storage/chaos", Some(set(kind))).await;
        let t0 = Instant::now();
        let (status, body) = download(&env, "/object/b/x.png").await.unwrap();
        assert_eq!((status, body.as_ref()), (200, payload.as_slice()));
        assert!(t0.elapsed() >= Duration::from_millis(100), "{kind}");
    }
    // slow_body never strikes a non-download.
    control(
        &env,
        Method::POST,
        "/__fake/storage/chaos",
        Some(set("slow_body")),
    )
    .await;
    let r = env
        .req(Method::POST, "/object/list/b", Some(&env.service))
        .json(&json!({"prefix": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats = control(&env, Method::DELETE, "/__fake/storage/chaos", None).await;
    assert_eq!(
        (stats["seen"].as_u64(), stats["faulted"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
}

#[tokio::test]
async fn rest_chaos_looks_like_postgrest_and_kong() {
    let (upstream, _task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    let set = |kind: &str| json!({"rate": 1.0, "seed": 2, "kinds": [kind], "hold_ms": 1500});
    control(&env, Method::POST, "/__fake/rest/chaos", Some(set("503"))).await;
    let (status, text) = rest_get(&env).await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, v["code"].as_str()), (503, Some("PGRST001")));
    control(&env, Method::POST, "/__fake/rest/chaos", Some(set("5xx"))).await;
    for _ in 0..4 {
        let (status, text) = rest_get(&env).await.unwrap();
        assert!(status == 502 || status == 504, "{status} {text}");
    }
    control(&env, Method::POST, "/__fake/rest/chaos", Some(set("reset"))).await;
    for _ in 0..4 {
        assert!(rest_get(&env).await.is_err());
    }
    // Storage-only kinds are refused for PostgREST.
    let r = env
        .http
        .post(format!("{}/__fake/rest/chaos", env.gw.url()))
        .json(&set("slow_body"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    control(&env, Method::DELETE, "/__fake/rest/chaos", None).await;
    assert_eq!(rest_get(&env).await.unwrap().0, 200);
    // Exempt requests pass.
    control(&env, Method::POST, "/__fake/rest/chaos", Some(set("5xx"))).await;
    let r = env
        .http
        .get(format!("{}/rest/v1/x", env.gw.url()))
        .header("apikey", &env.service)
        .header(chaos::EXEMPT_HEADER, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn outages_answer_like_a_dead_upstream_and_end_on_time() {
    let (upstream, _task) = echo_server().await;
    let env = start_with(|c| c.postgrest_url = upstream.clone()).await;
    env.create_bucket("b", true).await;
    assert_eq!(
        env.upload(&env.service, "b/x.png", b"abc").await.status(),
        200
    );
    control(
        &env,
        Method::POST,
        "/__fake/outage",
        Some(json!({"service": "storage", "seconds": 1.0})),
    )
    .await;
    control(
        &env,
        Method::POST,
        "/__fake/outage",
        Some(json!({"service": "rest", "seconds": 30, "mode": "reset"})),
    )
    .await;
    let down = control(&env, Method::GET, "/__fake/outage", None).await;
    assert_eq!(down["down"].as_array().unwrap().len(), 2, "{down}");
    let r = env.get(Some(&env.service), "/object/b/x.png").await;
    assert_eq!(r.status(), 502);
    assert!(rest_get(&env).await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Back, with its data.
    let (status, body) = download(&env, "/object/b/x.png").await.unwrap();
    assert_eq!((status, body.as_ref()), (200, b"abc".as_slice()));
    control(&env, Method::DELETE, "/__fake/outage?service=rest", None).await;
    assert_eq!(rest_get(&env).await.unwrap().0, 200);
}
