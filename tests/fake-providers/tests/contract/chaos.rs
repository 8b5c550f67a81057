//! Chaos mode (`/__fake/chaos`): the rate holds for a fixed seed, each kind looks like the real
//! service's failure, control routes are never faulted, and directives still work.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

async fn chaos(f: &fake_providers::Fakes, method: reqwest::Method, body: Option<Value>) -> Value {
    let mut req = client().request(method, format!("{}/__fake/chaos", f.base_url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (status, _, v) = json(req.send().await.expect("send")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// GET /task/{unknown}: a cheap provider request (404/2001 unless faulted).
async fn probe(
    f: &fake_providers::Fakes,
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let resp = client()
        .get(format!("{}/task/nope", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                e.to_string()
            }
        })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, headers, text))
}

#[tokio::test]
async fn rate_is_respected_for_a_fixed_seed_and_control_routes_are_spared() {
    let f = start().await;
    let on = chaos(
        &f,
        reqwest::Method::POST,
        Some(json!({"rate": 0.2, "seed": 11, "kinds": ["5xx", "429", "reset"]})),
    )
    .await;
    assert_eq!(on["active"], true, "{on}");
    let mut faulted = 0;
    for _ in 0..400 {
        match probe(&f).await {
            Ok((404, _, _)) => {}
            _ => faulted += 1,
        }
        // Control routes in between: never faulted.
        let (s, _, _) = json(
            client()
                .get(format!("{}/__fake/health", f.base_url()))
                .send()
                .await
                .expect("health"),
        )
        .await;
        assert_eq!(s, 200);
    }
    let stats = chaos(&f, reqwest::Method::DELETE, None).await;
    assert_eq!(stats["active"], false);
    assert_eq!(stats["seen"], 400, "{stats}");
    assert_eq!(stats["faulted"], faulted, "{stats}");
    assert!(
        (60..=100).contains(&faulted),
        "{faulted} of 400 faulted at rate 0.2"
    );
    // Off: nothing faulted; the log marks the faulted requests.
    for _ in 0..20 {
        assert_eq!(probe(&f).await.expect("probe").0, 404);
    }
    let marked = log(&f, "/v2/openapi/task/nope")
        .await
        .iter()
        .filter(|e| e["chaos"].is_string())
        .count();
    assert_eq!(marked as u64, faulted);
    // Bad specs are refused.
    let resp = client()
        .post(format!("{}/__fake/chaos", f.base_url()))
        .json(&json!({"rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    f.stop().await;
}

#[tokio::test]
async fn each_kind_looks_like_the_provider() {
    let f = start().await;
    let set = |kinds: Value| json!({"rate": 1.0, "seed": 5, "kinds": kinds, "hold_ms": 1500, "slow_ms": 300});

    // 5xx: Tripo's envelope (500 / 1000|1001) or a gateway's HTML 502.
    chaos(&f, reqwest::Method::POST, Some(set(json!(["5xx"])))).await;
    for _ in 0..6 {
        let (status, h, text) = probe(&f).await.expect("5xx answers");
        match status {
            500 => {
                let v: Value = serde_json::from_str(&text).expect("JSON");
                assert!(v["code"] == 1000 || v["code"] == 1001, "{v}");
                assert!(v["message"].is_string() && v["suggestion"].is_string());
            }
            502 => assert!(
                header(&h, "content-type").starts_with("text/html"),
                "{text}"
            ),
            other => panic!("unexpected {other}: {text}"),
        }
        assert!(!header(&h, "x-tripo-trace-id").is_empty());
    }
    // OpenAI 5xx and 429 in OpenAI's shape.
    let (status, h, v) = json(edit(&f, edit_form("a cat")).await).await;
    assert!(status == 500 || status == 503, "{status} {v}");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(!header(&h, "x-request-id").is_empty());
    chaos(&f, reqwest::Method::POST, Some(set(json!(["429"])))).await;
    let (status, h, v) = json(edit(&f, edit_form("a cat")).await).await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let secs: u64 = header(&h, "retry-after").parse().expect("retry-after");
    assert!((1..=3).contains(&secs));
    assert_eq!(header(&h, "retry-after-ms"), (secs * 1000).to_string());
    let (status, h, text) = probe(&f).await.expect("429 answers");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, v["code"].clone()), (429, json!(2000)));
    assert!(header(&h, "retry-after").parse::<u64>().is_ok());

    // reset: a network error, never an HTTP status.
    chaos(&f, reqwest::Method::POST, Some(set(json!(["reset"])))).await;
    for _ in 0..4 {
        assert!(probe(&f).await.is_err(), "reset must be a network error");
    }
    // A reset after handling: the task exists though its answer was lost.
    let n = nonce();
    let r = client()
        .post(format!("{}/task", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .json(&json!({"type": "text_to_model", "prompt": format!("a cat {n}")}))
        .send()
        .await;
    let lost = match r {
        Ok(resp) => resp.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(lost);

    // slow: the normal answer, late.
    chaos(&f, reqwest::Method::POST, Some(set(json!(["slow"])))).await;
    let t0 = Instant::now();
    assert_eq!(probe(&f).await.expect("slow answers").0, 404);
    assert!(t0.elapsed() >= Duration::from_millis(200));

    // timeout: nothing until the client gives up (its 2 s here; hold_ms 1.5 s then 504).
    chaos(
        &f,
        reqwest::Method::POST,
        Some(json!({"rate": 1.0, "kinds": ["timeout"], "hold_ms": 5000})),
    )
    .await;
    let t0 = Instant::now();
    let err = probe(&f).await.expect_err("the client gives up");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    assert!(t0.elapsed() >= Duration::from_secs(2));
    chaos(&f, reqwest::Method::POST, Some(set(json!(["timeout"])))).await;
    assert_eq!(probe(&f).await.expect("504 after the hold").0, 504);

    // slow_body: only downloads, every byte arrives.
    chaos(&f, reqwest::Method::DELETE, None).await;
    let id = create(&f, json!({"type": "text_to_model", "prompt": "a slow cat"})).await;
    let done = wait_done(&f, &id, Duration::from_secs(30)).await;
    let url = done["output"]["pbr_model"]
        .as_str()
        .expect("url")
        .to_string();
    let (_, _, want) = download(&url).await;
    chaos(&f, reqwest::Method::POST, Some(set(json!(["slow_body"])))).await;
    // Not a download: never faulted by slow_body alone.
    assert_eq!(probe(&f).await.expect("API untouched").0, 404);
    let t0 = Instant::now();
    let (status, _, got) = download(&url).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&got), sha256_hex(&want));
    assert!(t0.elapsed() >= Duration::from_millis(20 * (want.len() as u64 / 16384)));
    let stats = chaos(&f, reqwest::Method::DELETE, None).await;
    assert_eq!(stats["by_kind"]["slow_body"], 1, "{stats}");
    f.stop().await;
}

#[tokio::test]
async fn directives_still_apply_with_chaos_on_and_exempt_requests_pass() {
    let f = start().await;
    chaos(
        &f,
        reqwest::Method::POST,
        Some(json!({"rate": 1.0, "kinds": ["5xx"]})),
    )
    .await;
    // The harness's own requests carry the exemption header.
    let resp = client()
        .post(format!("{}/images/edits", f.openai_base_url()))
        .bearer_auth(f.openai_key())
        .header(::chaos::EXEMPT_HEADER, "1")
        .multipart(edit_form("a cat [[fake:moderation]]"))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "moderation_blocked");
    chaos(&f, reqwest::Method::DELETE, None).await;
    let (status, _, v) =
        json(edit(&f, edit_form("a cat [[fake:openai_500=1,nonce=z1]]")).await).await;
    assert_eq!(
        (status, v["error"]["type"].clone()),
        (500, json!("server_error"))
    );
    f.stop().await;
}
