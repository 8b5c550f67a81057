//! Helpers shared by the contract tests: starting a fake, HTTP shortcuts, polling.

use std::time::{Duration, Instant};

use fake_providers::{FakeConfig, Fakes};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, Response};
use serde_json::Value;

pub async fn start() -> Fakes {
    start_scaled(1.0).await
}

pub async fn start_scaled(time_scale: f64) -> Fakes {
    Fakes::start(FakeConfig {
        time_scale,
        ..FakeConfig::default()
    })
    .await
    .expect("fakes start")
}

pub fn client() -> Client {
    Client::builder().build().expect("client")
}

pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn png() -> Vec<u8> {
    fake_providers::solid_png(32, 32, [10, 200, 30])
}

pub fn file(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .expect("mime")
}

/// A valid edit form: one PNG `image`, `prompt`, `model`.
pub fn edit_form(prompt: &str) -> Form {
    Form::new()
        .percent_encode_noop()
        .text("model", "gpt-image-1")
        .text("prompt", prompt.to_string())
        .part("image", file(png(), "in.png", "image/png"))
}

pub async fn edit(f: &Fakes, form: Form) -> Response {
    client()
        .post(format!("{}/images/edits", f.openai_base_url()))
        .bearer_auth(f.openai_key())
        .multipart(form)
        .send()
        .await
        .expect("send")
}

pub async fn json(resp: Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, headers, v)
}

pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub async fn tripo_post(
    f: &Fakes,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    tripo_post_as(f, f.tripo_key(), path, body).await
}

pub async fn tripo_post_as(
    f: &Fakes,
    key: &str,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(format!("{}{path}", f.tripo_base_url()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("send");
    json(resp).await
}

pub async fn tripo_get(f: &Fakes, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    tripo_get_as(f, f.tripo_key(), path).await
}

pub async fn tripo_get_as(
    f: &Fakes,
    key: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .get(format!("{}{path}", f.tripo_base_url()))
        .bearer_auth(key)
        .send()
        .await
        .expect("send");
    json(resp).await
}

/// Creates a task; panics unless it succeeds; returns its id.
pub async fn create(f: &Fakes, body: Value) -> String {
    let (status, _, v) = tripo_post(f, "/task", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["task_id"].as_str().expect("task_id").to_string()
}

/// Uploads `bytes` as a PNG through `/upload/sts`; returns the image token.
pub async fn upload(f: &Fakes, bytes: Vec<u8>) -> String {
    let resp = client()
        .post(format!("{}/upload/sts", f.tripo_base_url()))
        .bearer_auth(f.tripo_key())
        .multipart(Form::new().part("file", file(bytes, "in.png", "image/png")))
        .send()
        .await
        .expect("send");
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 200, "{v}");
    v["data"]["image_token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Polls a task until its status is not queued/running; returns the final `data`.
pub async fn wait_done(f: &Fakes, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, _, v) = tripo_get(f, &format!("/task/{id}")).await;
        assert_eq!(status, 200, "{v}");
        let s = v["data"]["status"].as_str().unwrap_or_default().to_string();
        if s != "queued" && s != "running" {
            return v["data"].clone();
        }
        assert!(Instant::now() < deadline, "task {id} still {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Downloads `url` fully; returns status, headers, bytes.
pub async fn download(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = client().get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("bytes").to_vec())
}

pub async fn log(f: &Fakes, contains: &str) -> Vec<Value> {
    let resp = client()
        .get(format!("{}/__fake/log", f.base_url()))
        .query(&[("contains", contains)])
        .send()
        .await
        .expect("send");
    let (status, _, v) = json(resp).await;
    assert_eq!(status, 200);
    v.as_array().expect("array").clone()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}
