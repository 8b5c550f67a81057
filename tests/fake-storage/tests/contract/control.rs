//! Test-control endpoints: fault injection per request and the request log.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn two_injected_503s_then_success_and_the_log() {
    let env = start().await;
    env.create_bucket("makeit3d_app_assets", true).await;
    let fault = json!({
        "method": "POST",
        "path_prefix": "/object/makeit3d_app_assets/concepts/t-123/",
        "status": 503,
        "times": 2,
    });
    let r = env
        .http
        .post(format!("{}/__fake/storage/faults", env.gw.url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Another path and another method are not affected.
    json_ok(
        env.upload(
            &env.service,
            "makeit3d_app_assets/concepts/t-999/0.png",
            b"x",
        )
        .await,
    )
    .await;
    let r = env
        .get(
            Some(&env.service),
            "/object/makeit3d_app_assets/concepts/t-123/0.png",
        )
        .await;
    expect_error(r, "404", "NoSuchKey").await;

    for _ in 0..2 {
        let r = env
            .upload(
                &env.service,
                "makeit3d_app_assets/concepts/t-123/0.png",
                b"abc",
            )
            .await;
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["statusCode"], "503");
        assert_eq!(body["message"], "injected fault");
        assert!(body["error"].is_string());
    }
    let r = env
        .upload(
            &env.service,
            "makeit3d_app_assets/concepts/t-123/0.png",
            b"abc",
        )
        .await;
    assert_eq!(
        json_ok(r).await["Key"],
        "makeit3d_app_assets/concepts/t-123/0.png"
    );

    let log: Vec<Value> = env
        .http
        .get(format!(
            "{}/__fake/storage/log?path_prefix=/object/makeit3d_app_assets/concepts/t-123/",
            env.gw.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let summary: Vec<(String, u64, u64)> = log
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
                e["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET".to_string(), 400, 0),
            ("POST".to_string(), 503, 0),
            ("POST".to_string(), 503, 0),
            ("POST".to_string(), 200, 3),
        ]
    );
    assert_eq!(log[0]["storage_status"], 404);
    assert_eq!(log[0]["code"], "NoSuchKey");
    assert_eq!(
        log[3]["path"],
        "/object/makeit3d_app_assets/concepts/t-123/0.png"
    );
    let times: Vec<u64> = log.iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[0] > 1_700_000_000_000);

    // A download is logged with the bytes sent.
    let r = env
        .get(
            None,
            "/object/public/makeit3d_app_assets/concepts/t-123/0.png",
        )
        .await;
    assert_eq!(r.text().await.unwrap(), "abc");
    let log: Vec<Value> = env
        .http
        .get(format!(
            "{}/__fake/storage/log?path_prefix=/object/public/",
            env.gw.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["bytes"], 3);
    assert_eq!(log[0]["status"], 200);
    env.gw.stop().await;
}

#[tokio::test]
async fn delays_custom_bodies_and_4xx_faults() {
    let env = start().await;
    env.create_bucket("b", true).await;
    json_ok(env.upload(&env.service, "b/d/x.png", b"x").await).await;
    let add = |f: Value| {
        let env = &env;
        async move {
            let r = env
                .http
                .post(format!("{}/__fake/storage/faults", env.gw.url()))
                .json(&f)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    add(json!({"method": "GET", "path_prefix": "/object/public/b/d/", "delay_ms": 300})).await;
    let t = Instant::now();
    let r = env.get(None, "/object/public/b/d/x.png").await;
    assert_eq!(r.text().await.unwrap(), "x");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    env.get(None, "/object/public/b/d/x.png").await;
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "delay applied twice"
    );

    add(json!({"method": "get", "path_prefix": "/object/public/b/d/", "status": 502, "body": "<html>bad gateway</html>"})).await;
    let r = env.get(None, "/object/public/b/d/x.png").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "<html>bad gateway</html>");

    add(json!({"path_prefix": "/object/public/b/d/", "status": 404})).await;
    let r = env.get(None, "/object/public/b/d/x.png").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusCode"], "404");

    // Faults for an upload answer after reading the body; the next try goes through.
    add(json!({"method": "PUT", "path_prefix": "/object/b/d/", "status": 500})).await;
    let big = vec![0u8; 2 << 20];
    let r = env
        .req(Method::PUT, "/object/b/d/big.bin", Some(&env.service))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = env
        .req(Method::PUT, "/object/b/d/big.bin", Some(&env.service))
        .body(big)
        .send()
        .await
        .unwrap();
    json_ok(r).await;

    // Clearing removes pending faults.
    add(json!({"path_prefix": "/object/public/b/d/", "status": 503, "times": 5})).await;
    let r = env
        .http
        .delete(format!("{}/__fake/storage/faults", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        env.get(None, "/object/public/b/d/x.png").await.status(),
        200
    );

    let r = env
        .http
        .post(format!("{}/__fake/storage/faults", env.gw.url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    env.gw.stop().await;
}

#[tokio::test]
async fn control_endpoints_are_not_under_storage_and_unknown_paths_are_404() {
    let env = start().await;
    let r = env
        .http
        .get(env.url("/__fake/storage/log"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = env
        .http
        .get(format!("{}/nothing/here", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "no Route matched with those values"})
    );
    let r = env
        .http
        .get(format!("{}/__fake/storage/nope", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    env.gw.stop().await;
}
