//! Contract tests of the control routes (`/__fake/...`), the request log and start/stop.

use std::time::Duration;

use fake_providers::{FakeConfig, Fakes};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn log_records_both_providers_filtered_by_nonce() {
    let f = start_scaled(20.0).await;
    let n = nonce();
    let prompt = format!("a lamp [[fake:nonce={n}]]");
    let img = png();
    let form = reqwest::multipart::Form::new()
        .text("prompt", prompt.clone())
        .text("n", "2")
        .part("image", file(img.clone(), "lamp.png", "image/png"));
    assert_eq!(edit(&f, form).await.status().as_u16(), 200);
    let id = create(&f, json!({"type": "text_to_model", "prompt": prompt})).await;
    wait_done(&f, &id, Duration::from_secs(5)).await;
    create(
        &f,
        json!({"type": "text_to_model", "prompt": "someone else's"}),
    )
    .await;

    let entries = log(&f, &n).await;
    assert!(entries.len() >= 3, "{entries:?}");
    let o = &entries[0];
    assert_eq!(o["provider"], "openai");
    assert_eq!(o["method"], "POST");
    assert_eq!(o["path"], "/v1/images/edits");
    assert_eq!(o["status"], 200);
    assert!(o["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(o["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(o["body"]["prompt"], prompt.as_str());
    assert_eq!(o["body"]["n"], "2");
    assert_eq!(
        o["body"]["image"],
        json!({"filename": "lamp.png", "content_type": "image/png", "size": img.len(), "sha256": sha256_hex(&img)})
    );
    assert_eq!(o["directive"], format!("nonce={n}"));
    let c = &entries[1];
    assert_eq!(c["provider"], "tripo");
    assert_eq!(c["path"], "/v2/openapi/task");
    assert_eq!(
        c["body"],
        json!({"type": "text_to_model", "prompt": prompt})
    );
    assert_eq!(c["tripo_task_id"], id.as_str());
    // Every poll is attributable to the creating request.
    let polls: Vec<_> = entries[2..]
        .iter()
        .filter(|e| e["method"] == "GET")
        .collect();
    assert!(!polls.is_empty());
    for p in polls {
        assert_eq!(p["path"], format!("/v2/openapi/task/{id}"));
        assert_eq!(p["tripo_task_id"], id.as_str());
        assert_eq!(p["prompt"], prompt.as_str());
    }
    assert!(entries
        .iter()
        .all(|e| !e.to_string().contains("someone else")));
    // Everything, unfiltered, in arrival order.
    let all = log(&f, "").await;
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(all.iter().any(|e| e.to_string().contains("someone else")));
    // The in-process twin agrees.
    assert_eq!(f.log(Some(&n)).len(), entries.len());
    f.stop().await;
}

#[tokio::test]
async fn directive_rules_crud_and_validation() {
    let f = start().await;
    let c = client();
    let url = format!("{}/__fake/directives", f.base_url());
    let resp = c
        .post(&url)
        .json(&json!({"match": "x", "directive": "bogus_key=1"}))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("bogus_key"));
    let resp = c
        .post(&url)
        .json(&json!({"match": "", "directive": "quota"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .post(&url)
        .json(&json!({"match": "m1", "directive": "[[fake:openai_429=1,retry_after=2]]"}))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 201);
    let id = v["id"].as_u64().unwrap();
    let (_, _, list) = json(c.get(&url).send().await.unwrap()).await;
    assert_eq!(
        list,
        json!([{"id": id, "match": "m1", "directive": "openai_429=1,retry_after=2"}])
    );
    let (status, h, _) = json(edit(&f, edit_form("m1")).await).await;
    assert_eq!(status, 429);
    assert_eq!(header(&h, "retry-after"), "2");
    let del = |id: u64| c.delete(format!("{url}/{id}")).send();
    assert_eq!(del(id).await.unwrap().status().as_u16(), 204);
    assert_eq!(del(id).await.unwrap().status().as_u16(), 404);
    f.stop().await;
}

#[tokio::test]
async fn keys_route_and_task_introspection() {
    let f = start_scaled(20.0).await;
    let c = client();
    let resp = c
        .post(format!("{}/__fake/keys", f.base_url()))
        .json(&json!({"provider": "tripo", "key": "tsk_team_b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = c
        .post(format!("{}/__fake/keys", f.base_url()))
        .json(&json!({"provider": "tripo", "key": "no-prefix"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (status, _, v) = tripo_post_as(
        &f,
        "tsk_team_b",
        "/task",
        &json!({"type": "text_to_model", "prompt": "b"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["data"]["task_id"].as_str().unwrap().to_string();
    let (status, _, _) = tripo_get(&f, &format!("/task/{id}")).await;
    assert_eq!(status, 404, "the default key cannot see team b's task");
    let (status, _, _) = tripo_get_as(&f, "tsk_team_b", &format!("/task/{id}")).await;
    assert_eq!(status, 200);

    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:glb_bytes=9000]]", "pbr": false}),
    )
    .await;
    let resp = c
        .get(format!("{}/__fake/tasks/{id}", f.base_url()))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(v["directive"], "glb_bytes=9000");
    assert_eq!(
        v["models"]["model"],
        json!({"seed": format!("{id}:model"), "bytes": 9000})
    );
    let resp = c
        .get(format!("{}/__fake/tasks/nope", f.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = c
        .get(format!("{}/__fake/health", f.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await.2, json!({"ok": true}));
    f.stop().await;
}

#[tokio::test]
async fn start_validates_config_and_stop_closes_the_port() {
    assert!(Fakes::start(FakeConfig {
        time_scale: 0.0,
        ..FakeConfig::default()
    })
    .await
    .is_err());
    assert!(Fakes::start(FakeConfig {
        tripo_key: "bad".into(),
        ..FakeConfig::default()
    })
    .await
    .is_err());
    let f = start().await;
    assert!(f.openai_base_url().starts_with("http://127.0.0.1:"));
    assert!(f.openai_base_url().ends_with("/v1"));
    assert_eq!(
        f.tripo_base_url(),
        format!("http://127.0.0.1:{}/v2/openapi", f.addr.port())
    );
    let url = format!("{}/__fake/health", f.base_url());
    assert!(client().get(&url).send().await.is_ok());
    f.stop().await;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        c.get(&url).send().await.is_err(),
        "still serving after stop"
    );
}

#[tokio::test]
async fn image_task_requests_are_attributable_through_png_texts() {
    let f = start_scaled(20.0).await;
    let n = nonce();
    // A concept image from the OpenAI fake carries its prompt, defanged: the nonce is findable
    // but the prompt's directive does not apply to Tripo.
    let concept = fake_providers::concept_png(&format!("a vase {n} [[fake:moderation]]"), 0);
    let token = upload(&f, concept.clone()).await;
    let id = create(
        &f,
        json!({"type": "image_to_model", "file": {"type": "png", "file_token": token}}),
    )
    .await;
    let d = wait_done(&f, &id, Duration::from_secs(5)).await;
    assert_eq!(d["status"], "success");
    let (status, _, _) = download(d["output"]["pbr_model"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let entries = log(&f, &n).await;
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths[0], "/v2/openapi/upload/sts");
    assert_eq!(paths[1], "/v2/openapi/task");
    assert!(
        paths[2..]
            .iter()
            .any(|p| *p == format!("/v2/openapi/task/{id}")),
        "{paths:?}"
    );
    assert!(
        paths
            .last()
            .unwrap()
            .starts_with(&format!("/__fake/files/{id}/pbr_model.glb")),
        "{paths:?}"
    );
    let input = &entries[1]["inputs"][0];
    assert_eq!(input["image_token"], token.as_str());
    assert_eq!(input["sha256"], sha256_hex(&concept));
    let texts = input["texts"].to_string();
    assert!(
        texts.contains("[[fake-moderation]]") && texts.contains(&n),
        "{texts}"
    );
    assert!(entries[1].get("directive").is_none());
    f.stop().await;
}
