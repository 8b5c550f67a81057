//! Contract tests of the OpenAI fake (`POST /v1/images/edits`).

use std::time::{Duration, Instant};

use base64::Engine as _;
use fake_providers::{concept_image, concept_png, png_dimensions, ImageFormat};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::common::*;

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("b64_json string"))
        .expect("valid base64")
}

#[tokio::test]
async fn edit_returns_n_real_deterministic_pngs_with_headers() {
    let f = start().await;
    let prompt = format!("a red chair, studio light {}", nonce());
    let form = edit_form(&prompt)
        .text("n", "3")
        .text("size", "1024x1536")
        .text("quality", "high")
        .text("background", "opaque")
        .text("output_format", "png");
    let (status, h, v) = json(edit(&f, form).await).await;
    assert_eq!(status, 200, "{v}");
    assert!(header(&h, "x-request-id").starts_with("req_"), "{h:?}");
    assert_eq!(header(&h, "x-ratelimit-limit-requests"), "5000");
    let remaining: u64 = header(&h, "x-ratelimit-remaining-requests")
        .parse()
        .unwrap();
    assert_eq!(remaining, 4999);
    assert!(!header(&h, "x-ratelimit-reset-requests").is_empty());
    assert!(!header(&h, "openai-processing-ms").is_empty());
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["size"], "1024x1536");
    assert_eq!(v["quality"], "high");
    assert_eq!(v["background"], "opaque");
    assert_eq!(v["output_format"], "png");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        let bytes = b64(&d["b64_json"]);
        assert_eq!(bytes, concept_png(&prompt, i as u32), "image {i}");
        assert_eq!(png_dimensions(&bytes), Some((64, 64)));
    }
    assert_ne!(b64(&data[0]["b64_json"]), b64(&data[1]["b64_json"]));
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(u["output_tokens"], 3 * 6240);
    assert_eq!(u["input_tokens_details"]["image_tokens"], 194);
    f.stop().await;
}

#[tokio::test]
async fn edit_defaults_and_image_array_parts_of_every_type() {
    let f = start().await;
    let form = Form::new()
        .percent_encode_noop()
        .text("prompt", "keep the object identical")
        .part("image[]", file(png(), "a.png", "image/png"))
        .part(
            "image[]",
            file(
                fake_providers::jpeg_solid(16, 16, [1, 2, 3]),
                "b.jpg",
                "image/jpeg",
            ),
        )
        .part(
            "image[]",
            file(
                fake_providers::webp_solid(16, 16, [1, 2, 3, 255]),
                "c.webp",
                "image/webp",
            ),
        );
    let (status, _, v) = json(edit(&f, form).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["size"], "1024x1024");
    assert_eq!(v["quality"], "medium");
    assert_eq!(v["background"], "opaque");
    assert_eq!(v["usage"]["input_tokens_details"]["image_tokens"], 3 * 194);
    f.stop().await;
}

#[tokio::test]
async fn edit_output_formats_are_real_webp_and_jpeg() {
    let f = start().await;
    for (fmt, kind, magic) in [
        ("webp", ImageFormat::Webp, b"RIFF".as_slice()),
        ("jpeg", ImageFormat::Jpeg, [0xFF, 0xD8, 0xFF].as_slice()),
    ] {
        let prompt = format!("fmt {fmt}");
        let form = edit_form(&prompt).text("output_format", fmt);
        let (status, _, v) = json(edit(&f, form).await).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["output_format"], fmt);
        let bytes = b64(&v["data"][0]["b64_json"]);
        assert!(bytes.starts_with(magic), "{fmt}");
        assert_eq!(ImageFormat::sniff(&bytes), Some(kind));
        assert_eq!(bytes, concept_image(&prompt, 0, kind));
    }
    f.stop().await;
}

#[tokio::test]
async fn edit_requires_the_bearer_key() {
    let f = start().await;
    let url = format!("{}/images/edits", f.openai_base_url());
    let resp = client()
        .post(&url)
        .multipart(edit_form("x"))
        .send()
        .await
        .unwrap();
    let (status, h, v) = json(resp).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["param"].is_null());
    assert!(header(&h, "x-request-id").starts_with("req_"));
    let resp = client()
        .post(&url)
        .bearer_auth("sk-wrong-key-123456")
        .multipart(edit_form("x"))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Incorrect API key provided: sk-******3456"),
        "{msg}"
    );
    f.stop().await;
}

#[tokio::test]
async fn edit_rejects_octet_stream_missing_type_and_non_images() {
    let f = start().await;
    let octet = Form::new()
        .text("prompt", "p")
        .part("image", file(png(), "in.png", "application/octet-stream"));
    let (status, _, v) = json(edit(&f, octet).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "unsupported_file_mimetype");
    assert_eq!(v["error"]["param"], "image");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'application/octet-stream'"));

    let untyped = Form::new()
        .text("prompt", "p")
        .part("image", Part::bytes(png()).file_name("in.png"));
    let (status, _, v) = json(edit(&f, untyped).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "unsupported_file_mimetype");

    let fake_png = Form::new().text("prompt", "p").part(
        "image",
        file(b"GIF89a not really".to_vec(), "in.png", "image/png"),
    );
    let (status, _, v) = json(edit(&f, fake_png).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "invalid_image_file");
    assert_eq!(v["error"]["param"], "image");

    let not_multipart = client()
        .post(format!("{}/images/edits", f.openai_base_url()))
        .bearer_auth(f.openai_key())
        .json(&serde_json::json!({"prompt": "p"}))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(not_multipart).await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("multipart/form-data"));
    f.stop().await;
}

#[tokio::test]
async fn edit_validates_every_field() {
    let f = start().await;
    type Build = fn() -> Form;
    let cases: Vec<(&str, Build, &str, &str)> = vec![
        (
            "no prompt",
            || Form::new().part("image", file(png(), "a.png", "image/png")),
            "missing_required_parameter",
            "prompt",
        ),
        (
            "empty prompt",
            || {
                Form::new()
                    .text("prompt", "")
                    .part("image", file(png(), "a.png", "image/png"))
            },
            "empty_string",
            "prompt",
        ),
        (
            "no image",
            || Form::new().text("prompt", "p"),
            "missing_required_parameter",
            "image",
        ),
        (
            "image as text",
            || Form::new().text("prompt", "p").text("image", "abc"),
            "invalid_type",
            "image",
        ),
        (
            "prompt as file",
            || {
                Form::new()
                    .part("prompt", file(b"p".to_vec(), "p.txt", "text/plain"))
                    .part("image", file(png(), "a.png", "image/png"))
            },
            "invalid_type",
            "prompt",
        ),
        (
            "n=0",
            || edit_form("p").text("n", "0"),
            "integer_below_min_value",
            "n",
        ),
        (
            "n=11",
            || edit_form("p").text("n", "11"),
            "integer_above_max_value",
            "n",
        ),
        (
            "n=two",
            || edit_form("p").text("n", "two"),
            "invalid_type",
            "n",
        ),
        (
            "size",
            || edit_form("p").text("size", "512x512"),
            "invalid_value",
            "size",
        ),
        (
            "quality",
            || edit_form("p").text("quality", "ultra"),
            "invalid_value",
            "quality",
        ),
        (
            "quality standard on gpt",
            || edit_form("p").text("quality", "standard"),
            "invalid_value",
            "quality",
        ),
        (
            "background",
            || edit_form("p").text("background", "neon"),
            "invalid_value",
            "background",
        ),
        (
            "output_format",
            || edit_form("p").text("output_format", "gif"),
            "invalid_value",
            "output_format",
        ),
        (
            "transparent jpeg",
            || {
                edit_form("p")
                    .text("background", "transparent")
                    .text("output_format", "jpeg")
            },
            "invalid_value",
            "background",
        ),
        (
            "compression png",
            || edit_form("p").text("output_compression", "50"),
            "invalid_value",
            "output_compression",
        ),
        (
            "compression range",
            || {
                edit_form("p")
                    .text("output_format", "webp")
                    .text("output_compression", "101")
            },
            "integer_above_max_value",
            "output_compression",
        ),
        (
            "unknown field",
            || edit_form("p").text("style", "vivid"),
            "unknown_parameter",
            "style",
        ),
        (
            "task_id leak",
            || edit_form("p").text("task_id", "t-1"),
            "unknown_parameter",
            "task_id",
        ),
        (
            "response_format on gpt",
            || edit_form("p").text("response_format", "url"),
            "unknown_parameter",
            "response_format",
        ),
        (
            "model",
            || {
                Form::new()
                    .text("model", "gpt-5")
                    .text("prompt", "p")
                    .part("image", file(png(), "a.png", "image/png"))
            },
            "invalid_value",
            "model",
        ),
        (
            "dall-e-3",
            || {
                Form::new()
                    .text("model", "dall-e-3")
                    .text("prompt", "p")
                    .part("image", file(png(), "a.png", "image/png"))
            },
            "invalid_value",
            "model",
        ),
        (
            "fidelity on mini",
            || {
                Form::new()
                    .text("model", "gpt-image-1-mini")
                    .text("prompt", "p")
                    .text("input_fidelity", "high")
                    .part("image", file(png(), "a.png", "image/png"))
            },
            "unsupported_parameter",
            "input_fidelity",
        ),
        (
            "duplicate prompt",
            || edit_form("p").text("prompt", "q"),
            "duplicate_parameter",
            "prompt",
        ),
        (
            "stream",
            || edit_form("p").text("stream", "yes"),
            "invalid_type",
            "stream",
        ),
        (
            "mask size",
            || {
                edit_form("p").part(
                    "mask",
                    file(
                        fake_providers::solid_png(8, 8, [0, 0, 0]),
                        "m.png",
                        "image/png",
                    ),
                )
            },
            "invalid_mask_dimensions",
            "mask",
        ),
        (
            "too long",
            || edit_form(&"x".repeat(32_001)),
            "string_above_max_length",
            "prompt",
        ),
    ];
    for (name, build, code, param) in cases {
        let (status, h, v) = json(edit(&f, build()).await).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert_eq!(v["error"]["code"], code, "{name}: {v}");
        assert_eq!(v["error"]["param"], param, "{name}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{name}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert!(header(&h, "x-request-id").starts_with("req_"), "{name}");
    }
    // Sanity: the accepted values of the same fields pass.
    let ok = edit_form("p")
        .text("n", "10")
        .text("size", "auto")
        .text("quality", "low")
        .text("background", "transparent")
        .text("output_format", "webp")
        .text("output_compression", "80")
        .text("input_fidelity", "high")
        .text("moderation", "low")
        .text("user", "u-1")
        .part(
            "mask",
            file(
                fake_providers::solid_png(32, 32, [0, 0, 0]),
                "m.png",
                "image/png",
            ),
        );
    let (status, _, v) = json(edit(&f, ok).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    assert_eq!(v["background"], "transparent");
    f.stop().await;
}

#[tokio::test]
async fn gpt_image_2_accepts_custom_sizes() {
    let f = start().await;
    let form = |size: &str| {
        Form::new()
            .text("model", "gpt-image-2")
            .text("prompt", "p")
            .text("size", size.to_string())
            .part("image", file(png(), "a.png", "image/png"))
    };
    let (status, _, v) = json(edit(&f, form("2048x1152")).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["size"], "2048x1152");
    for bad in ["1000x1000", "3840x960", "4096x2304"] {
        let (status, _, v) = json(edit(&f, form(bad)).await).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(v["error"]["param"], "size");
    }
    f.stop().await;
}

#[tokio::test]
async fn directive_openai_429_counts_per_directive_text() {
    let f = start().await;
    let (a, b) = (nonce(), nonce());
    let prompt_a = format!("chair [[fake:openai_429=2,retry_after=3,nonce={a}]]");
    let prompt_b = format!("chair [[fake:openai_429=2,retry_after=3,nonce={b}]]");
    for round in 0..2 {
        let (status, h, v) = json(edit(&f, edit_form(&prompt_a)).await).await;
        assert_eq!(status, 429, "round {round}: {v}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["type"], "requests");
        assert_eq!(header(&h, "retry-after"), "3");
        assert_eq!(header(&h, "retry-after-ms"), "3000");
        assert_eq!(header(&h, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(header(&h, "x-ratelimit-reset-requests"), "3s");
        assert_eq!(header(&h, "x-ratelimit-limit-requests"), "5000");
    }
    // Another test's directive has its own counter.
    let (status, _, _) = json(edit(&f, edit_form(&prompt_b)).await).await;
    assert_eq!(status, 429);
    let (status, _, v) = json(edit(&f, edit_form(&prompt_a)).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(b64(&v["data"][0]["b64_json"]), concept_png(&prompt_a, 0));
    let entries = log(&f, &a).await;
    let statuses: Vec<u64> = entries
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    f.stop().await;
}

#[tokio::test]
async fn directive_openai_500_then_success() {
    let f = start().await;
    let prompt = format!("x [[fake:openai_500=1,nonce={}]]", nonce());
    let (status, _, v) = json(edit(&f, edit_form(&prompt)).await).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["code"].is_null());
    let (status, _, _) = json(edit(&f, edit_form(&prompt)).await).await;
    assert_eq!(status, 200);
    f.stop().await;
}

#[tokio::test]
async fn directive_moderation_quota_invalid_key_invalid_image() {
    let f = start().await;
    let (status, h, v) = json(edit(&f, edit_form("gore [[fake:moderation]]")).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "moderation_blocked");
    assert_eq!(v["error"]["type"], "image_generation_user_error");
    assert_eq!(
        v["error"]["moderation_details"]["moderation_stage"],
        "input"
    );
    assert!(h.get("retry-after").is_none());

    let (status, h, v) = json(edit(&f, edit_form("x [[fake:quota]]")).await).await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert!(h.get("retry-after").is_none(), "quota is not retryable");

    let (status, _, v) = json(edit(&f, edit_form("x [[fake:invalid_key]]")).await).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let (status, _, v) = json(edit(&f, edit_form("x [[fake:invalid_image]]")).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "invalid_image_file");
    assert_eq!(v["error"]["param"], "image");

    let (status, _, v) = json(edit(&f, edit_form("x [[fake:modration]]")).await).await;
    assert_eq!(status, 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("fake-providers:") && msg.contains("modration"),
        "{msg}"
    );
    f.stop().await;
}

#[tokio::test]
async fn directive_openai_delay_ms_delays_the_answer() {
    let f = start().await;
    let t = Instant::now();
    let (status, _, _) = json(edit(&f, edit_form("x [[fake:openai_delay_ms=600]]")).await).await;
    assert_eq!(status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let (status, _, _) = json(edit(&f, edit_form("x")).await).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_millis(600));
    f.stop().await;
}

#[tokio::test]
async fn control_rule_applies_to_matching_prompts_and_images() {
    let f = start().await;
    let n = nonce();
    let c = client();
    let resp = c
        .post(format!("{}/__fake/directives", f.base_url()))
        .json(&serde_json::json!({"match": n, "directive": "moderation"}))
        .send()
        .await
        .unwrap();
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 201);
    let id = v["id"].as_u64().unwrap();
    let (status, _, v) = json(edit(&f, edit_form(&format!("a chair {n}"))).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "moderation_blocked");
    // The substring in an image's bytes also matches.
    let img = fake_providers::png_with_text(16, 16, [1, 1, 1], "Comment", &n);
    let form = Form::new()
        .text("prompt", "plain")
        .part("image", file(img, "a.png", "image/png"));
    let (status, _, _) = json(edit(&f, form).await).await;
    assert_eq!(status, 400);
    let (status, _, _) = json(edit(&f, edit_form("unrelated")).await).await;
    assert_eq!(status, 200);
    let resp = c
        .delete(format!("{}/__fake/directives/{id}", f.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (status, _, _) = json(edit(&f, edit_form(&format!("a chair {n}"))).await).await;
    assert_eq!(status, 200);
    f.stop().await;
}

#[tokio::test]
async fn stream_true_sends_sse_events() {
    let f = start().await;
    let form = edit_form("streamed")
        .text("stream", "true")
        .text("partial_images", "1")
        .text("n", "2");
    let resp = edit(&f, form).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "image_edit.partial_image",
            "image_edit.completed",
            "image_edit.partial_image",
            "image_edit.completed"
        ]
    );
    assert_eq!(b64(&events[3]["b64_json"]), concept_png("streamed", 1));
    assert!(events[1]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    f.stop().await;
}

#[tokio::test]
async fn dall_e_2_returns_urls_by_default() {
    let f = start().await;
    let form = Form::new()
        .text("model", "dall-e-2")
        .text("prompt", "old school")
        .text("size", "256x256")
        .part("image", file(png(), "a.png", "image/png"));
    let (status, _, v) = json(edit(&f, form).await).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("usage").is_none());
    let url = v["data"][0]["url"].as_str().unwrap();
    let (status, h, bytes) = download(url).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "image/png");
    assert_eq!(bytes, concept_png("old school", 0));
    let form = Form::new()
        .text("model", "dall-e-2")
        .text("prompt", "p")
        .text("background", "opaque")
        .part("image", file(png(), "a.png", "image/png"));
    let (status, _, v) = json(edit(&f, form).await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    f.stop().await;
}

#[tokio::test]
async fn unknown_openai_route_is_404_in_openai_shape() {
    let f = start().await;
    let resp = client()
        .post(format!("{}/images/variations", f.openai_base_url()))
        .bearer_auth(f.openai_key())
        .send()
        .await
        .unwrap();
    let (status, h, v) = json(resp).await;
    assert_eq!(status, 404);
    assert_eq!(
        v["error"]["message"],
        "Invalid URL (POST /v1/images/variations)"
    );
    assert!(header(&h, "x-request-id").starts_with("req_"));
    f.stop().await;
}
