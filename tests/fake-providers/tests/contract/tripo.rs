//! Contract tests of the Tripo fake (`/v2/openapi/...`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::*;

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn assert_error(status: u16, v: &Value, want_status: u16, want_code: i64) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["code"], want_code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["suggestion"].as_str().is_some(), "{v}");
}

#[tokio::test]
async fn auth_is_required_and_trace_id_is_on_every_response() {
    let f = start().await;
    let c = client();
    let url = format!("{}/task", f.tripo_base_url());
    let body = json!({"type": "text_to_model", "prompt": "a cat"});
    for key in [
        None,
        Some("tsk_wrong"),
        Some("tcli_0123456789"),
        Some("sk-fake-openai-0123456789"),
    ] {
        let mut req = c.post(&url).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let (status, h, v) = json(req.send().await.unwrap()).await;
        assert_error(status, &v, 401, 1002);
        assert!(is_uuid(header(&h, "x-tripo-trace-id")), "{key:?}: {h:?}");
    }
    let (status, h, v) = tripo_post(&f, "/task", &body).await;
    assert_eq!(status, 200, "{v}");
    assert!(is_uuid(header(&h, "x-tripo-trace-id")));
    let (status, h, v) = tripo_get(&f, "/no/such/route").await;
    assert_eq!(status, 404, "{v}");
    assert!(is_uuid(header(&h, "x-tripo-trace-id")));
    let (_, h1, _) = tripo_get(&f, "/user/balance").await;
    let (_, h2, _) = tripo_get(&f, "/user/balance").await;
    assert_ne!(
        header(&h1, "x-tripo-trace-id"),
        header(&h2, "x-tripo-trace-id")
    );
    f.stop().await;
}

#[tokio::test]
async fn create_rejects_malformed_bodies_and_bad_values() {
    let f = start().await;
    let resp = client()
        .post(format!("{}/task", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_error(status, &v, 400, 1003);
    let resp = client()
        .post(format!("{}/task", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .header("content-type", "text/plain")
        .body(r#"{"type":"text_to_model","prompt":"x"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_error(status, &v, 400, 1003);

    let cases = [
        (json!({"type": "sketch_to_model", "prompt": "x"}), 400, 2002),
        (json!({"prompt": "x"}), 400, 1004),
        (json!({"type": "text_to_model"}), 400, 1004),
        (
            json!({"type": "text_to_model", "prompt": "x".repeat(1025)}),
            400,
            2009,
        ),
        (
            json!({"type": "text_to_model", "prompt": "a cat 😺"}),
            400,
            2009,
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "model_version": "v1.4-20240625"}),
            400,
            2015,
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "model_version": "v2.6-20990101"}),
            400,
            2017,
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "model_version": "P1-20260311", "quad": false}),
            400,
            1004,
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "generate_parts": true}),
            400,
            1004,
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, h, v) = tripo_post(&f, "/task", &body).await;
        assert_error(status, &v, want_status, want_code);
        assert!(is_uuid(header(&h, "x-tripo-trace-id")));
    }
    f.stop().await;
}

#[tokio::test]
async fn create_is_strict_about_fields_and_names_them() {
    let f = start().await;
    let cases = [
        (
            json!({"type": "text_to_model", "prompt": "x", "task_id": "y"}),
            "task_id",
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "style": "a cute cartoon"}),
            "style",
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "texture": "yes"}),
            "texture",
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "pbr": null}),
            "pbr",
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "face_limit": "10000"}),
            "face_limit",
        ),
        (
            json!({"type": "text_to_model", "prompt": "x", "texture_quality": "ultra"}),
            "texture_quality",
        ),
        (json!({"type": "text_to_model", "prompt": 5}), "prompt"),
        (
            json!({"type": "image_to_model", "prompt": "x", "file": {"type": "png", "url": "https://e.com/a.png"}}),
            "prompt",
        ),
        (
            json!({"type": "image_to_model", "file": {"type": "png", "url": "https://e.com/a.png"}, "negative_prompt": "n"}),
            "negative_prompt",
        ),
        (
            json!({"type": "image_to_model", "file": {"type": "png", "url": "https://e.com/a.png", "data": "AAAA"}}),
            "file.data",
        ),
        (
            json!({"type": "refine_model", "draft_model_task_id": "d", "texture": true}),
            "texture",
        ),
        (
            json!({"type": "multiview_to_model", "files": [], "orientation": "sideways"}),
            "orientation",
        ),
    ];
    for (body, field) in cases {
        let (status, _, v) = tripo_post(&f, "/task", &body).await;
        assert_error(status, &v, 400, 1004);
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(field), "message {msg:?} should name {field}");
    }
    // Every documented field with a valid value passes, including a legacy style preset.
    let full = json!({"type": "text_to_model", "prompt": "a small cat", "model_version": "v3.0-20250812",
        "negative_prompt": "blurry", "image_seed": 1, "model_seed": 2, "texture_seed": 3,
        "texture": true, "pbr": true, "texture_quality": "detailed", "geometry_quality": "detailed",
        "face_limit": 10000, "auto_size": true, "quad": false, "smart_low_poly": false,
        "generate_parts": false, "compress": "geometry", "export_uv": true, "style": "object:clay"});
    let id = create(&f, full.clone()).await;
    let (_, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
    let mut echo = full;
    echo.as_object_mut().unwrap().remove("type");
    assert_eq!(v["data"]["input"], echo);
    f.stop().await;
}

#[tokio::test]
async fn task_timeline_queued_running_success() {
    // 4 s queued + 12 s running in fake time, 8x faster: 0.5 s + 1.5 s real.
    let f = start_scaled(8.0).await;
    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "a cat [[fake:queue_s=4,run_s=12]]"}),
    )
    .await;
    assert!(is_uuid(&id));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let (status, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["code"], 0);
        let d = v["data"].clone();
        assert_eq!(d["task_id"], id.as_str());
        assert_eq!(d["type"], "text_to_model");
        let s = d["status"].as_str().unwrap().to_string();
        seen.push(d.clone());
        if s == "success" {
            break d;
        }
        assert!(Instant::now() < deadline, "stuck in {s}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    let statuses: Vec<&str> = seen.iter().map(|d| d["status"].as_str().unwrap()).collect();
    let first_running = statuses
        .iter()
        .position(|s| *s == "running")
        .expect("saw running");
    assert_eq!(statuses[0], "queued");
    assert!(statuses[..first_running].iter().all(|s| *s == "queued"));
    for q in &seen[..first_running] {
        assert_eq!(q["progress"], 0);
        assert!((1..=4).contains(&q["queuing_num"].as_i64().unwrap()), "{q}");
        assert_eq!(q["running_left_time"], -1);
        assert_eq!(q["output"], json!({}));
    }
    let positions: Vec<i64> = seen[..first_running]
        .iter()
        .map(|q| q["queuing_num"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] >= w[1]), "{positions:?}");
    let running: Vec<&Value> = seen.iter().filter(|d| d["status"] == "running").collect();
    let progress: Vec<i64> = running
        .iter()
        .map(|d| d["progress"].as_i64().unwrap())
        .collect();
    let left: Vec<i64> = running
        .iter()
        .map(|d| d["running_left_time"].as_i64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        progress.iter().all(|p| (1..=99).contains(p)),
        "{progress:?}"
    );
    assert!(
        progress.iter().collect::<BTreeSet<_>>().len() >= 3,
        "{progress:?}"
    );
    assert!(left.windows(2).all(|w| w[0] >= w[1]), "{left:?}");
    assert!(left.iter().all(|l| *l >= 1 && *l <= 2), "{left:?}");
    assert!(left.first() > left.last(), "{left:?}");
    for r in &running {
        assert_eq!(r["queuing_num"], -1);
        assert_eq!(r["output"], json!({}));
    }
    assert_eq!(last["progress"], 100);
    assert_eq!(last["queuing_num"], -1);
    assert_eq!(last["running_left_time"], -1);
    assert_eq!(last["consumed_credit"], 20.0);
    let model = last["output"]["pbr_model"].as_str().unwrap();
    assert!(
        model.contains(&format!("/__fake/files/{id}/pbr_model.glb?expires=")),
        "{model}"
    );
    assert!(last["output"]["rendered_image"]
        .as_str()
        .unwrap()
        .contains("rendered_image.webp"));
    assert!(last["output"].get("model").is_none());
    assert!(last["output"].get("base_model").is_none());
    assert_eq!(
        last["result"]["pbr_model"],
        json!({"type": "glb", "url": model})
    );
    assert_eq!(last["result"]["rendered_image"]["type"], "webp");
    assert_eq!(last["thumbnail"], last["output"]["rendered_image"]);
    assert!(last["create_time"].as_u64().unwrap() > 1_700_000_000);
    f.stop().await;
}

#[tokio::test]
async fn no_left_time_keeps_minus_one_while_running() {
    let f = start().await;
    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:queue_s=0,run_s=5,no_left_time]]"}),
    )
    .await;
    let (_, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
    assert_eq!(v["data"]["status"], "running");
    assert_eq!(v["data"]["running_left_time"], -1);
    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:queue_s=0,run_s=5]]"}),
    )
    .await;
    let (_, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
    assert_eq!(v["data"]["running_left_time"], 5);
    f.stop().await;
}

#[tokio::test]
async fn outputs_follow_texture_and_pbr() {
    let f = start().await;
    let cases = [
        (json!({}), vec!["pbr_model"]),
        (json!({"pbr": false}), vec!["model"]),
        (
            json!({"texture": false, "pbr": false}),
            vec!["model", "base_model"],
        ),
    ];
    for (extra, kinds) in cases {
        let mut body = json!({"type": "text_to_model", "prompt": "x [[fake:queue_s=0,run_s=0]]"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let id = create(&f, body).await;
        let d = wait_done(&f, &id, Duration::from_secs(5)).await;
        let mut keys: Vec<&str> = d["output"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.retain(|k| *k != "rendered_image");
        keys.sort_unstable();
        let mut want = kinds.clone();
        want.sort_unstable();
        assert_eq!(keys, want, "{extra}");
        for k in &kinds {
            assert_eq!(d["result"][k]["url"], d["output"][k]);
        }
    }
    f.stop().await;
}

#[tokio::test]
async fn get_task_with_other_key_or_unknown_id_is_2001() {
    let f = start().await;
    let id = create(&f, json!({"type": "text_to_model", "prompt": "x"})).await;
    f.add_key("tsk_second_account");
    let (status, _, v) = tripo_get_as(&f, "tsk_second_account", &format!("/task/{id}")).await;
    assert_error(status, &v, 404, 2001);
    let (status, _, v) = tripo_get(&f, &format!("/task/{}", uuid::Uuid::new_v4())).await;
    assert_error(status, &v, 404, 2001);
    let (status, _, v) = tripo_get(&f, "/task/not-a-uuid").await;
    assert_error(status, &v, 404, 2001);
    let (status, _, _) = tripo_get(&f, &format!("/task/{id}")).await;
    assert_eq!(status, 200);
    f.stop().await;
}

async fn upload_raw(f: &Fakes, path: &str, form: Form) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(format!("{}{path}", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .multipart(form)
        .send()
        .await
        .unwrap();
    json(resp).await
}

use fake_providers::Fakes;

#[tokio::test]
async fn uploads_validate_files_and_return_tokens() {
    let f = start().await;
    for path in ["/upload", "/upload/sts"] {
        for (bytes, mime) in [
            (png(), "image/png"),
            (fake_providers::jpeg_solid(24, 24, [1, 2, 3]), "image/jpeg"),
            (
                fake_providers::webp_solid(24, 24, [1, 2, 3, 255]),
                "image/webp",
            ),
        ] {
            let (status, h, v) = upload_raw(
                &f,
                path,
                Form::new().part("file", file(bytes, "x.img", mime)),
            )
            .await;
            assert_eq!(status, 200, "{path} {mime}: {v}");
            assert_eq!(v["code"], 0);
            assert!(is_uuid(v["data"]["image_token"].as_str().unwrap()));
            assert!(is_uuid(header(&h, "x-tripo-trace-id")));
        }
    }
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part("file", file(vec![], "e.png", "image/png")),
    )
    .await;
    assert_error(status, &v, 400, 2003);
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part("file", file(png(), "x.txt", "text/plain")),
    )
    .await;
    assert_error(status, &v, 400, 2004);
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part("file", Part::bytes(png()).file_name("x.png")),
    )
    .await;
    assert_error(status, &v, 400, 2004);
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part(
            "file",
            file(b"%PDF-1.4 nope".to_vec(), "x.png", "image/png"),
        ),
    )
    .await;
    assert_error(status, &v, 400, 2004);
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part("image", file(png(), "x.png", "image/png")),
    )
    .await;
    assert_error(status, &v, 400, 1004);
    assert!(v["message"].as_str().unwrap().contains("image"));
    let mut big = png();
    big.resize(20 * 1024 * 1024 + 1, 0);
    let (status, _, v) = upload_raw(
        &f,
        "/upload/sts",
        Form::new().part("file", file(big, "big.png", "image/png")),
    )
    .await;
    assert_error(status, &v, 400, 1004);
    assert!(v["message"].as_str().unwrap().contains("20 MB"));
    f.stop().await;
}

#[tokio::test]
async fn image_to_model_resolves_tokens_urls_and_objects() {
    let f = start().await;
    let token = upload(&f, png()).await;
    create(
        &f,
        json!({"type": "image_to_model", "file": {"type": "png", "file_token": token}}),
    )
    .await;
    create(&f, json!({"type": "image_to_model", "file": {"type": "png", "url": "https://example.com/a.png"}})).await;

    let (status, _, v) =
        tripo_post(&f, "/task", &json!({"type": "image_to_model", "file": {"type": "png", "file_token": uuid::Uuid::new_v4().to_string()}}))
            .await;
    assert_error(status, &v, 404, 2019);
    // A token belongs to the key that uploaded it.
    f.add_key("tsk_other");
    let (status, _, v) = tripo_post_as(
        &f,
        "tsk_other",
        "/task",
        &json!({"type": "image_to_model", "file": {"type": "png", "file_token": token}}),
    )
    .await;
    assert_error(status, &v, 404, 2019);
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "image_to_model", "file": {"type": "png", "file_token": token, "url": "https://e.com/x.png"}}),
    )
    .await;
    assert_error(status, &v, 400, 1004);

    // STS: token → object reference.
    let (status, _, v) = tripo_post(&f, "/upload/sts/token", &json!({"format": "png"})).await;
    assert_eq!(status, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["resource_bucket"], "tripo-data");
    assert_eq!(d["s3_host"], "s3.us-west-2.amazonaws.com");
    for k in ["session_token", "sts_ak", "sts_sk"] {
        assert!(d[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
    }
    let key = d["resource_uri"].as_str().unwrap().to_string();
    assert!(key.ends_with("/input.png"), "{key}");
    create(&f, json!({"type": "image_to_model", "file": {"type": "png", "object": {"bucket": "tripo-data", "key": key}}})).await;
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "image_to_model", "file": {"type": "png", "object": {"bucket": "tripo-data", "key": "nope/input.png"}}}),
    )
    .await;
    assert_error(status, &v, 404, 2019);
    let (status, _, v) = tripo_post(&f, "/upload/sts/token", &json!({"format": "gif"})).await;
    assert_error(status, &v, 400, 1004);
    let (status, _, v) = tripo_post(
        &f,
        "/upload/sts/token",
        &json!({"format": "png", "size": 1}),
    )
    .await;
    assert_error(status, &v, 400, 1004);
    f.stop().await;
}

#[tokio::test]
async fn multiview_slot_rules() {
    let f = start().await;
    let t: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(json!({"type": "png", "file_token": upload(&f, png()).await}));
        }
        v
    };
    create(
        &f,
        json!({"type": "multiview_to_model", "files": [t[0], {}, t[1], {}]}),
    )
    .await;
    create(
        &f,
        json!({"type": "multiview_to_model", "files": [t[0], t[1], t[2], t[3]]}),
    )
    .await;
    let bad = [
        (json!([t[0], t[1], t[2]]), 1004, "4"),
        (json!([t[0], t[1], t[2], t[3], t[0]]), 1004, "4"),
        (json!([{}, t[1], t[2], t[3]]), 1004, "front"),
        (json!([t[0], {}, {}, {}]), 1004, "2 real"),
        (json!([t[0], {"type": "png"}, {}, {}]), 1004, "files[1]"),
    ];
    for (files, code, word) in bad {
        let (status, _, v) = tripo_post(
            &f,
            "/task",
            &json!({"type": "multiview_to_model", "files": files}),
        )
        .await;
        assert_error(status, &v, 400, code);
        assert!(v["message"].as_str().unwrap().contains(word), "{v}");
    }
    let unknown = json!({"type": "png", "file_token": uuid::Uuid::new_v4().to_string()});
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "multiview_to_model", "files": [t[0], unknown, {}, {}]}),
    )
    .await;
    assert_error(status, &v, 404, 2019);
    let (status, _, v) = tripo_post(&f, "/task", &json!({"type": "multiview_to_model"})).await;
    assert_error(status, &v, 400, 1004);
    f.stop().await;
}

#[tokio::test]
async fn refine_model_rules_and_directive_carry_over() {
    let f = start().await;
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "refine_model", "draft_model_task_id": uuid::Uuid::new_v4().to_string()}),
    )
    .await;
    assert_error(status, &v, 404, 2001);
    let slow_draft = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:queue_s=30]]"}),
    )
    .await;
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "refine_model", "draft_model_task_id": slow_draft}),
    )
    .await;
    assert_error(status, &v, 400, 2007);
    let n = nonce();
    let draft = create(
        &f,
        json!({"type": "text_to_model", "prompt": format!("x [[fake:queue_s=0,run_s=0,glb_bytes=5000,nonce={n}]]")}),
    )
    .await;
    wait_done(&f, &draft, Duration::from_secs(5)).await;
    f.add_key("tsk_other");
    let (status, _, v) = tripo_post_as(
        &f,
        "tsk_other",
        "/task",
        &json!({"type": "refine_model", "draft_model_task_id": draft}),
    )
    .await;
    assert_error(status, &v, 404, 2001);
    let refine = create(
        &f,
        json!({"type": "refine_model", "draft_model_task_id": draft}),
    )
    .await;
    let d = wait_done(&f, &refine, Duration::from_secs(5)).await;
    assert_eq!(d["status"], "success");
    assert_eq!(d["type"], "refine_model");
    assert_eq!(d["input"], json!({"draft_model_task_id": draft}));
    let (status, h, bytes) = download(d["output"]["pbr_model"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-length"), "5000");
    assert_eq!(
        bytes,
        fake_providers::glb_bytes(&fake_providers::model_seed(&refine, "pbr_model"), 5000)
    );
    // Refining a refine is not allowed; the legacy alias works.
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "refine_model", "draft_model_task_id": refine}),
    )
    .await;
    assert_error(status, &v, 400, 2006);
    create(
        &f,
        json!({"type": "refine_model", "rough_model_task_id": draft}),
    )
    .await;
    // The refine's log entries are attributable to the draft's nonce.
    let entries = log(&f, &n).await;
    assert!(
        entries
            .iter()
            .any(|e| e["tripo_task_id"] == refine.as_str()),
        "{entries:?}"
    );
    f.stop().await;
}

#[tokio::test]
async fn directive_create_2000_then_success_with_retry_after() {
    let f = start().await;
    let body = json!({"type": "text_to_model", "prompt": format!("x [[fake:create_2000=2,retry_after=7,nonce={}]]", nonce())});
    for _ in 0..2 {
        let (status, h, v) = tripo_post(&f, "/task", &body).await;
        assert_error(status, &v, 429, 2000);
        assert_eq!(header(&h, "retry-after"), "7");
        assert!(is_uuid(header(&h, "x-tripo-trace-id")));
    }
    let (status, _, v) = tripo_post(&f, "/task", &body).await;
    assert_eq!(status, 200, "{v}");
    // Default Retry-After is 1.
    let body = json!({"type": "text_to_model", "prompt": format!("x [[fake:create_2000=1,nonce={}]]", nonce())});
    let (_, h, _) = tripo_post(&f, "/task", &body).await;
    assert_eq!(header(&h, "retry-after"), "1");
    f.stop().await;
}

#[tokio::test]
async fn directive_create_5xx_moderation_no_credits() {
    let f = start().await;
    let body = json!({"type": "text_to_model", "prompt": format!("x [[fake:create_5xx=1,nonce={}]]", nonce())});
    let (status, _, v) = tripo_post(&f, "/task", &body).await;
    assert_error(status, &v, 500, 1000);
    let (status, _, _) = tripo_post(&f, "/task", &body).await;
    assert_eq!(status, 200);
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "text_to_model", "prompt": "x [[fake:moderation]]"}),
    )
    .await;
    assert_error(status, &v, 400, 2008);
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "text_to_model", "prompt": "x [[fake:no_credits]]"}),
    )
    .await;
    assert_error(status, &v, 403, 2010);
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "text_to_model", "prompt": "x [[fake:nocredits]]"}),
    )
    .await;
    assert_error(status, &v, 400, 1004);
    assert!(v["message"].as_str().unwrap().contains("fake-providers"));
    f.stop().await;
}

#[tokio::test]
async fn directive_final_statuses() {
    let f = start_scaled(10.0).await;
    let cases = [
        ("final=failed", "failed", Some(1001)),
        ("final=banned", "banned", Some(2008)),
        ("final=failed,error_code=2008", "failed", Some(2008)),
        ("final=expired", "expired", None),
        ("final=cancelled", "cancelled", None),
        ("final=unknown", "unknown", None),
    ];
    let mut ids = Vec::new();
    for (dir, _, _) in &cases {
        let body = json!({"type": "text_to_model", "prompt": format!("x [[fake:{dir}]]")});
        ids.push(create(&f, body).await);
    }
    for ((dir, status, code), id) in cases.into_iter().zip(ids) {
        let d = wait_done(&f, &id, Duration::from_secs(5)).await;
        assert_eq!(d["status"], status, "{dir}: {d}");
        assert_eq!(d["output"], json!({}), "{dir}");
        assert_eq!(d["result"], json!({}), "{dir}");
        assert_eq!(d["consumed_credit"], 0.0, "{dir}");
        assert_eq!(d["running_left_time"], -1);
        match code {
            Some(c) => assert_eq!(d["error_code"], c, "{dir}"),
            None => assert!(d.get("error_code").is_none(), "{dir}: {d}"),
        }
    }
    f.stop().await;
}

#[tokio::test]
async fn directive_poll_5xx_fails_the_first_polls_of_that_task() {
    let f = start().await;
    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:poll_5xx=2]]"}),
    )
    .await;
    for _ in 0..2 {
        let (status, h, v) = tripo_get(&f, &format!("/task/{id}")).await;
        assert_error(status, &v, 500, 1000);
        assert!(is_uuid(header(&h, "x-tripo-trace-id")));
    }
    let (status, _, v) = tripo_get(&f, &format!("/task/{id}")).await;
    assert_eq!(status, 200, "{v}");
    // Same directive text, different task: its own counter.
    let id2 = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:poll_5xx=2]]"}),
    )
    .await;
    let (status, _, _) = tripo_get(&f, &format!("/task/{id2}")).await;
    assert_eq!(status, 500);
    f.stop().await;
}

#[tokio::test]
async fn directive_slow_ms_delays_create_and_poll() {
    let f = start().await;
    let t = Instant::now();
    let id = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:slow_ms=400]]"}),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    tripo_get(&f, &format!("/task/{id}")).await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    create(&f, json!({"type": "text_to_model", "prompt": "x"})).await;
    assert!(t.elapsed() < Duration::from_millis(400));
    f.stop().await;
}

#[tokio::test]
async fn directives_travel_in_uploaded_image_bytes() {
    let f = start_scaled(10.0).await;
    let n = nonce();
    let img = fake_providers::png_with_text(
        32,
        32,
        [5, 5, 5],
        "Comment",
        &format!("[[fake:final=banned,nonce={n}]]"),
    );
    let token = upload(&f, img).await;
    let id = create(
        &f,
        json!({"type": "image_to_model", "file": {"type": "png", "file_token": token}}),
    )
    .await;
    let d = wait_done(&f, &id, Duration::from_secs(5)).await;
    assert_eq!(d["status"], "banned");
    // Multiview: a directive in any slot applies.
    let plain = upload(&f, png()).await;
    let marked = upload(
        &f,
        fake_providers::png_with_text(
            32,
            32,
            [5, 5, 5],
            "Comment",
            "[[fake:create_5xx=1,nonce=mv]]",
        ),
    )
    .await;
    let body = json!({"type": "multiview_to_model", "files": [
        {"type": "png", "file_token": plain}, {}, {"type": "png", "file_token": marked}, {}]});
    let (status, _, v) = tripo_post(&f, "/task", &body).await;
    assert_error(status, &v, 500, 1000);
    let (status, _, _) = tripo_post(&f, "/task", &body).await;
    assert_eq!(status, 200);
    // The upload and the task's polls are in the log under the nonce.
    let entries = log(&f, &n).await;
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths[0], "/v2/openapi/upload/sts");
    assert!(paths.contains(&"/v2/openapi/task"));
    assert!(paths
        .iter()
        .any(|p| p.starts_with(&format!("/v2/openapi/task/{id}"))));
    f.stop().await;
}

#[tokio::test]
async fn control_rule_applies_to_tripo_creates_and_uploads() {
    let f = start().await;
    let n = nonce();
    f.add_directive(&n, "no_credits").unwrap();
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "text_to_model", "prompt": format!("a {n}")}),
    )
    .await;
    assert_error(status, &v, 403, 2010);
    let token = upload(
        &f,
        fake_providers::png_with_text(8, 8, [0, 0, 0], "Comment", &n),
    )
    .await;
    let (status, _, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "image_to_model", "file": {"type": "png", "file_token": token}}),
    )
    .await;
    assert_error(status, &v, 403, 2010);
    create(&f, json!({"type": "text_to_model", "prompt": "other"})).await;
    f.stop().await;
}

#[tokio::test]
async fn concurrency_limit_per_key_and_bucket() {
    let f = start().await;
    let long = |i: usize| json!({"type": "text_to_model", "prompt": format!("x{i} [[fake:queue_s=0,run_s=60]]")});
    for i in 0..10 {
        create(&f, long(i)).await;
    }
    let (status, h, v) = tripo_post(&f, "/task", &long(10)).await;
    assert_error(status, &v, 429, 2000);
    let ra: u64 = header(&h, "retry-after").parse().unwrap();
    assert!((50..=60).contains(&ra), "{ra}");
    // Other keys and the P1 bucket are separate.
    f.add_key("tsk_other");
    let (status, _, _) = tripo_post_as(&f, "tsk_other", "/task", &long(11)).await;
    assert_eq!(status, 200);
    let p1 = |i: usize| {
        json!({"type": "text_to_model", "model_version": "P1-20260311",
               "prompt": format!("p{i} [[fake:queue_s=0,run_s=60]]")})
    };
    for i in 0..5 {
        create(&f, p1(i)).await;
    }
    let (status, _, v) = tripo_post(&f, "/task", &p1(5)).await;
    assert_error(status, &v, 429, 2000);
    // Finished tasks free their slot.
    let f2 = start_scaled(20.0).await;
    for i in 0..10 {
        create(
            &f2,
            json!({"type": "text_to_model", "prompt": format!("y{i} [[fake:queue_s=0,run_s=20]]")}),
        )
        .await;
    }
    let (status, _, _) = tripo_post(&f2, "/task", &long(0)).await;
    assert_eq!(status, 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create(&f2, long(1)).await;
    f.stop().await;
    f2.stop().await;
}

#[tokio::test]
async fn refine_concurrency_limit_is_5() {
    let f = start().await;
    f.add_directive("refine_model", "queue_s=0,run_s=60")
        .unwrap();
    let mut drafts = Vec::new();
    for i in 0..6 {
        let id = create(
            &f,
            json!({"type": "text_to_model", "prompt": format!("d{i} [[fake:queue_s=0,run_s=0]]")}),
        )
        .await;
        drafts.push(id);
    }
    for d in &drafts[..5] {
        create(
            &f,
            json!({"type": "refine_model", "draft_model_task_id": d}),
        )
        .await;
    }
    let (status, h, v) = tripo_post(
        &f,
        "/task",
        &json!({"type": "refine_model", "draft_model_task_id": drafts[5]}),
    )
    .await;
    assert_error(status, &v, 429, 2000);
    assert!(!header(&h, "retry-after").is_empty());
    // Generation tasks are in another bucket.
    create(&f, json!({"type": "text_to_model", "prompt": "z"})).await;
    f.stop().await;
}

#[tokio::test]
async fn balance_freezes_and_spends_credits() {
    let f = start_scaled(10.0).await;
    let (status, _, v) = tripo_get(&f, "/user/balance").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!({"balance": 10000.0, "frozen": 0.0}));
    // A directive can ride in a URL file object: 10 fake seconds = 1 real second at 10x.
    let url = "https://e.com/a.png#[[fake:queue_s=0,run_s=10]]";
    let id = create(
        &f,
        json!({"type": "image_to_model", "file": {"type": "png", "url": url},
        "texture_quality": "detailed"}),
    )
    .await;
    let (_, _, v) = tripo_get(&f, "/user/balance").await;
    assert_eq!(v["data"], json!({"balance": 10000.0, "frozen": 50.0}));
    let d = wait_done(&f, &id, Duration::from_secs(5)).await;
    assert_eq!(d["consumed_credit"], 50.0);
    let (_, _, v) = tripo_get(&f, "/user/balance").await;
    assert_eq!(v["data"], json!({"balance": 9950.0, "frozen": 0.0}));
    let failed = create(
        &f,
        json!({"type": "text_to_model", "prompt": "x [[fake:final=failed]]"}),
    )
    .await;
    wait_done(&f, &failed, Duration::from_secs(5)).await;
    let (_, _, v) = tripo_get(&f, "/user/balance").await;
    assert_eq!(v["data"]["balance"], 9950.0, "failed tasks are not charged");
    let resp = client()
        .get(format!("{}/user/balance", f.tripo_base_url()))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_error(status, &v, 401, 1002);
    f.stop().await;
}
