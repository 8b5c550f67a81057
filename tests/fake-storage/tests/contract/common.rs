//! Shared helpers of the contract tests: a gateway on port 0 with a temp dir, keys, requests.
#![allow(dead_code)]

use std::path::PathBuf;

use fake_storage::{jwt, Gateway, GatewayConfig};
use reqwest::{Method, Response};
use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-with-at-least-32-characters-xx";

pub struct Env {
    pub gw: Gateway,
    pub dir: tempfile::TempDir,
    pub service: String,
    pub anon: String,
    pub http: reqwest::Client,
}

pub async fn start() -> Env {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig {
        storage_root: dir.path().join("storage"),
        jwt_secret: SECRET.to_string(),
        anon_key: jwt::anon_key(SECRET),
        service_key: jwt::service_role_key(SECRET),
        postgrest_url: "http://127.0.0.1:9".to_string(),
        ..GatewayConfig::default()
    };
    tweak(&mut cfg);
    let gw = Gateway::start(cfg).await.unwrap();
    Env {
        gw,
        dir,
        service: jwt::service_role_key(SECRET),
        anon: jwt::anon_key(SECRET),
        http: reqwest::Client::new(),
    }
}

impl Env {
    pub fn url(&self, storage_path: &str) -> String {
        format!("{}/storage/v1{storage_path}", self.gw.url())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.path().join("storage").join("tmp")
    }

    pub fn user(&self, sub: &str) -> String {
        jwt::user_token(
            SECRET,
            sub,
            3600,
            Some(&format!("{}/auth/v1", self.gw.url())),
        )
    }

    pub fn req(
        &self,
        method: Method,
        storage_path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(storage_path));
        if let Some(t) = token {
            r = r.bearer_auth(t).header("apikey", t);
        }
        r
    }

    pub async fn create_bucket(&self, id: &str, public: bool) {
        let r = self
            .req(Method::POST, "/bucket", Some(&self.service))
            .json(&json!({"id": id, "name": id, "public": public}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "create bucket {id}");
    }

    /// Raw upload with a content type.
    pub async fn upload(&self, token: &str, bucket_key: &str, body: &[u8]) -> Response {
        self.req(Method::POST, &format!("/object/{bucket_key}"), Some(token))
            .header("content-type", "image/png")
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: Option<&str>, storage_path: &str) -> Response {
        self.req(Method::GET, storage_path, token)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts an HTTP 400 Storage error with the given body `statusCode` and `code`; returns the body.
pub async fn expect_error(resp: Response, status: &str, code: &str) -> Value {
    assert_eq!(resp.status(), 400, "HTTP status of a {status} {code} error");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], status, "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    body
}

pub async fn json_ok(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "body: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Sends a request whose URI goes out exactly as written (reqwest's URL parser would resolve
/// `..` and `%2E%2E` segments). Returns the status and the body as text.
pub async fn raw_request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
