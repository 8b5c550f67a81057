//! The route table: which (method, path) pairs exist and what they mean. Pure, so unknown
//! routes (404) and wrong methods (405 with `Allow`) are decided and tested natively.

use crate::error::ApiError;
use crate::request::Endpoint;

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    OpenApi,
    /// `POST /generate/{name}`: one of the generation endpoints ([`Endpoint::ALL`]).
    Generate(Endpoint),
    /// `GET /tasks/{task_id}/status`; the raw (still percent-encoded) path segment.
    Status(String),
    /// `GET /tasks/{task_id}/events`: the live status as Server-Sent Events.
    Events(String),
    /// `GET /tasks/{task_id}/ws`: the live status over a WebSocket.
    Ws(String),
    /// `POST /tasks/{task_id}/cancel`.
    Cancel(String),
    /// `GET /`: the playground page (a static asset, served with its Content-Security-Policy).
    Playground,
    /// `GET /playground/config.json`: the playground's public configuration.
    PlaygroundConfig,
    /// `OPTIONS` on any known path (CORS preflight).
    Preflight,
    /// `POST /__test/enqueue`: sends a raw job message. Only when `TEST_HOOKS=true` (end-to-end
    /// tests force a duplicate delivery with it); a 404 otherwise.
    TestEnqueue,
    /// `POST /providers/tripo/webhook`: Tripo's signed v3 webhooks.
    TripoWebhook,
}

/// Which path pattern a path belongs to, and the methods it allows.
fn pattern(path: &str) -> Option<(Route, &'static str)> {
    match path {
        "/health" => return Some((Route::Health, "GET, HEAD, OPTIONS")),
        "/openapi.json" => return Some((Route::OpenApi, "GET, HEAD, OPTIONS")),
        "/" => return Some((Route::Playground, "GET, HEAD")),
        "/playground/config.json" => return Some((Route::PlaygroundConfig, "GET, HEAD, OPTIONS")),
        "/__test/enqueue" => return Some((Route::TestEnqueue, "POST")),
        "/providers/tripo/webhook" => return Some((Route::TripoWebhook, "POST")),
        _ => {}
    }
    if let Some(endpoint) = Endpoint::from_path(path) {
        return Some((Route::Generate(endpoint), "POST, OPTIONS"));
    }
    if let Some(rest) = path.strip_prefix("/tasks/") {
        let (id, action) = rest.rsplit_once('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        let id = id.to_owned();
        return match action {
            "status" => Some((Route::Status(id), "GET, HEAD, OPTIONS")),
            "events" => Some((Route::Events(id), "GET, OPTIONS")),
            "ws" => Some((Route::Ws(id), "GET, OPTIONS")),
            "cancel" => Some((Route::Cancel(id), "POST, OPTIONS")),
            _ => None,
        };
    }
    None
}

/// The request method as routed: as sent, at most 20 characters. Fetch has already upper-cased
/// the standard methods; any other is kept as it is (methods are case-sensitive), so an unknown
/// one can only be a 405.
pub fn method_name(raw: &str) -> String {
    raw.chars().take(20).collect()
}

/// Matches a request line. `HEAD` is served wherever `GET` is.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let Some((route, allowed)) = pattern(path) else {
        return Err(ApiError::RouteNotFound(path.chars().take(200).collect()));
    };
    if method == "OPTIONS" {
        return Ok(Route::Preflight);
    }
    let ok = allowed.split(", ").any(|m| m == method);
    if ok {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.chars().take(20).collect(),
            allowed: allowed.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes_match() {
        assert_eq!(route("GET", "/health"), Ok(Route::Health));
        assert_eq!(route("HEAD", "/health"), Ok(Route::Health));
        assert_eq!(route("GET", "/openapi.json"), Ok(Route::OpenApi));
        assert_eq!(route("GET", "/"), Ok(Route::Playground));
        assert_eq!(
            route("GET", "/playground/config.json"),
            Ok(Route::PlaygroundConfig)
        );
        assert_eq!(route("POST", "/").unwrap_err().status(), 405);
        for e in Endpoint::ALL {
            assert_eq!(route("POST", e.path()), Ok(Route::Generate(e)));
            assert_eq!(e.path(), format!("/generate/{}", e.name()));
        }
        assert_eq!(
            route("GET", "/tasks/t-1/status"),
            Ok(Route::Status("t-1".into()))
        );
        assert_eq!(
            route("OPTIONS", "/generate/text-to-model"),
            Ok(Route::Preflight)
        );
        assert_eq!(
            route("GET", "/tasks/t-1/events"),
            Ok(Route::Events("t-1".into()))
        );
        assert_eq!(route("GET", "/tasks/t-1/ws"), Ok(Route::Ws("t-1".into())));
        assert_eq!(
            route("POST", "/tasks/t-1/cancel"),
            Ok(Route::Cancel("t-1".into()))
        );
        assert_eq!(route("GET", "/tasks/t-1/cancel").unwrap_err().status(), 405);
        assert_eq!(route("GET", "/tasks/t-1/other").unwrap_err().status(), 404);
        assert_eq!(
            route("POST", "/providers/tripo/webhook"),
            Ok(Route::TripoWebhook)
        );
        assert_eq!(
            route("GET", "/providers/tripo/webhook")
                .unwrap_err()
                .status(),
            405
        );
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in [
            "/nope",
            "//",
            "/index.html",
            "/playground/",
            "/generate/",
            "/generate/select-concept",
            "/tasks//status",
            "/tasks/a/b/status",
            "/health/",
        ] {
            let e = route("GET", p).unwrap_err();
            assert_eq!(e.status(), 404, "{p}");
        }
        assert_eq!(route("OPTIONS", "/nope").unwrap_err().status(), 404);
    }

    #[test]
    fn unknown_methods_are_405_not_get() {
        // The router sees the method as sent (`worker::Method` would read these as GET; the
        // worker crate's `http` tests check that it still does).
        for m in [
            "QUERY", "PATCH", "PUT", "DELETE", "TRACE", "PROPFIND", "get",
        ] {
            for p in ["/health", "/openapi.json", "/tasks/t-1/status"] {
                let e = route(&method_name(m), p).unwrap_err();
                assert_eq!(e.status(), 405, "{m} {p}");
                assert_eq!(e.headers()[0], ("allow", "GET, HEAD, OPTIONS".to_owned()));
                assert_eq!(e.code(), "method_not_allowed");
            }
            let e = route(&method_name(m), "/generate/text-to-model").unwrap_err();
            assert_eq!(e.headers()[0].1, "POST, OPTIONS");
        }
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        let e = route("DELETE", "/health").unwrap_err();
        assert_eq!(e.status(), 405);
        assert_eq!(e.headers()[0].1, "GET, HEAD, OPTIONS");
        assert_eq!(
            route("GET", "/generate/text-to-model")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(route("POST", "/tasks/t/status").unwrap_err().status(), 405);
    }
}
