//! `/rest/v1/*` → PostgREST: Kong-style key-auth, then a streaming reverse proxy.
//!
//! The key comes from the `apikey` header, else the `?apikey=` query parameter, and must equal the
//! anon or the service key. It is removed before forwarding (Kong's `hide_credentials`). The rest
//! of the request URI after `/rest/v1` is forwarded byte for byte; bodies stream both ways.
//!
//! After key-auth, the faults of [`crate::rest_control`] apply (a rule with `match_body` makes the
//! proxy buffer the request body first), and every request is logged there, key-auth failures
//! included.

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::gateway::GatewayConfig;
use crate::rest_control::{Excerpt, RestControl, Tee};
use crate::util::{form_decode, json_response, now_ms};

const PREFIX: &str = "/rest/v1";

/// The most a request body is buffered for `match_body` faults.
const BUFFER_CAP: usize = 64 << 20;

pub(crate) struct Proxy {
    upstream: String,
    anon_key: String,
    service_key: String,
    client: Client<HttpConnector, Body>,
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes every `apikey` parameter from a raw query, leaving the other bytes untouched.
fn strip_apikey_param(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| form_decode(pair.split_once('=').map_or(*pair, |(k, _)| k)) != "apikey")
        .collect::<Vec<_>>()
        .join("&")
}

impl Proxy {
    pub(crate) fn new(cfg: &GatewayConfig) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Proxy {
            upstream: cfg.postgrest_url.trim_end_matches('/').to_string(),
            anon_key: cfg.anon_key.clone(),
            service_key: cfg.service_key.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Serves one `/rest/v1/*` request: key-auth, faults, then the upstream; logs it.
    pub(crate) async fn handle(&self, control: &RestControl, req: Request<Body>) -> Response<Body> {
        let at_ms = now_ms();
        let method = req.method().clone();
        // The path after the prefix with the query, never with a key, for faults and the log.
        let mut log_path = req
            .uri()
            .path()
            .strip_prefix(PREFIX)
            .unwrap_or("/")
            .to_string();
        if let Some(q) = req.uri().query().map(strip_apikey_param) {
            if !q.is_empty() {
                log_path.push('?');
                log_path.push_str(&q);
            }
        }
        let excerpt = Excerpt::default();
        let resp = self
            .handle_inner(control, req, &log_path, excerpt.clone())
            .await;
        control.record(&method, log_path, resp.status().as_u16(), at_ms, excerpt);
        resp
    }

    async fn handle_inner(
        &self,
        control: &RestControl,
        req: Request<Body>,
        log_path: &str,
        excerpt: Excerpt,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let raw_query = parts.uri.query().map(str::to_string);

        // Key-auth: header first, then the query string.
        let header_key = parts
            .headers
            .get("apikey")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let query_key = crate::util::query_param(raw_query.as_deref(), "apikey");
        let (key, from_query) = match (header_key, query_key) {
            (Some(k), _) => (k, false),
            (None, Some(k)) => (k, true),
            (None, None) => {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": "No API key found in request"}),
                )
            }
        };
        if key != self.anon_key && key != self.service_key {
            return json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"message": "Invalid authentication credentials"}),
            );
        }

        // Faults, after key-auth. The body is read whole only for a `match_body` rule.
        let mut body = Body::new(Tee::new(body, excerpt));
        let decoded = percent_encoding::percent_decode_str(log_path).decode_utf8_lossy();
        let hit = if control.needs_body(&parts.method, log_path, &decoded) {
            let bytes = match axum::body::to_bytes(body, BUFFER_CAP).await {
                Ok(b) => b,
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"message": format!("cannot read request body: {e}")}),
                    )
                }
            };
            body = Body::from(bytes.clone());
            control.take_fault(&parts.method, log_path, &decoded, Some(&bytes))
        } else {
            control.take_fault(&parts.method, log_path, &decoded, None)
        };
        if let Some(hit) = hit {
            if let Some(delay) = hit.delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(resp) = hit.response {
                crate::storage::drain(body).await;
                return resp;
            }
        }

        // The raw path after the prefix, byte for byte.
        let path = parts
            .uri
            .path()
            .strip_prefix(PREFIX)
            .unwrap_or("/")
            .to_string();
        let query = match raw_query {
            Some(q) if from_query => Some(strip_apikey_param(&q)),
            other => other,
        };
        let target = match query {
            Some(q) if !q.is_empty() => format!("{}{path}?{q}", self.upstream),
            _ => format!("{}{path}", self.upstream),
        };
        let uri: Uri = match target.parse() {
            Ok(u) => u,
            Err(_) => return bad_gateway(),
        };
        let host = uri.authority().map(|a| a.as_str().to_string());
        let client_host = parts.headers.get(header::HOST).cloned();

        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove("apikey");
        if let Some(h) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            parts.headers.insert(header::HOST, h);
        }
        parts
            .headers
            .insert("x-forwarded-prefix", HeaderValue::from_static(PREFIX));
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Some(h) = client_host {
            parts.headers.insert("x-forwarded-host", h);
        }
        parts.uri = uri;
        parts.version = axum::http::Version::HTTP_11;

        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                Response::from_parts(rparts, Body::new(rbody))
            }
            Err(e) => {
                eprintln!("fake-storage gateway: upstream {target}: {e}");
                bad_gateway()
            }
        }
    }
}

/// Kong's answer when the upstream cannot be reached.
fn bad_gateway() -> Response<Body> {
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({"message": "An invalid response was received from the upstream server"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_apikey_parameter() {
        assert_eq!(
            strip_apikey_param("select=a,b&apikey=k&name=eq.a%20b"),
            "select=a,b&name=eq.a%20b"
        );
        assert_eq!(strip_apikey_param("apikey=k"), "");
        assert_eq!(strip_apikey_param("x=in.(a,b)"), "x=in.(a,b)");
    }
}
