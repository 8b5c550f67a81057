//! Chaos mode for the test fakes: seeded, reproducible random faults.
//!
//! A [`Chaos`] switch lives on each control surface (the provider fakes, the gateway's Storage
//! and its `/rest/v1` proxy). Switched on with a [`ChaosSpec`] (`{"rate":0.2,"seed":7,
//! "kinds":["5xx","429","slow","timeout","reset","slow_body"]}`), it draws one number per request
//! from a SplitMix64 stream seeded with `seed`: with probability `rate` the request is faulted,
//! and further draws pick the kind (uniformly among the requested kinds the route supports), the
//! variant (which 5xx, how long a `Retry-After`), whether the fault strikes before or after the
//! real handling (`after`: the work is done and its answer lost), and delays. The same seed and
//! the same request order give the same faults; under concurrency the order itself varies, so a
//! run is reproducible in its fault mix and rate, not request for request.
//!
//! Requests carrying the header [`EXEMPT_HEADER`] are never faulted (the harness's own reads);
//! the worker never sends it. Test-control routes are never faulted: callers only ask for a
//! decision on service routes.
//!
//! This crate decides and provides the mechanics shared by every surface ([`reset_body`],
//! [`trickle`], [`hold`]); each surface shapes the answers like its real service.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A request with this header (any value) is never faulted.
pub const EXEMPT_HEADER: &str = "x-chaos-exempt";

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A server error (500/502/503/504, shaped like the service's own).
    #[serde(rename = "5xx")]
    ServerError,
    /// 503 Service Unavailable (PostgREST: the database is unreachable).
    #[serde(rename = "503")]
    Unavailable,
    /// Rate limited: 429 with `Retry-After` (Storage: HTTP 400 with `statusCode` "429").
    #[serde(rename = "429")]
    RateLimited,
    /// A slow answer: a delay of up to `slow_ms`, then the normal answer.
    #[serde(rename = "slow")]
    Slow,
    /// No answer until the client gives up (or `hold_ms` passes, then a 504).
    #[serde(rename = "timeout")]
    Timeout,
    /// The connection is dropped without an answer (before or after the work was done).
    #[serde(rename = "reset")]
    Reset,
    /// A download whose body trickles in small pieces with pauses.
    #[serde(rename = "slow_body")]
    SlowBody,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ServerError => "5xx",
            Kind::Unavailable => "503",
            Kind::RateLimited => "429",
            Kind::Slow => "slow",
            Kind::Timeout => "timeout",
            Kind::Reset => "reset",
            Kind::SlowBody => "slow_body",
        }
    }
}

/// What `POST /__fake/chaos` takes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    /// Fraction of eligible requests to fault, 0..=1.
    pub rate: f64,
    /// Seed of the random stream.
    #[serde(default)]
    pub seed: u64,
    /// Kinds to draw from; empty = every kind the surface supports.
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Longest a `timeout` holds a request (default: the surface's, longer than the worker's
    /// own timeouts for that service).
    #[serde(default)]
    pub hold_ms: Option<u64>,
    /// Longest delay of a `slow` answer (default 4000).
    #[serde(default)]
    pub slow_ms: Option<u64>,
}

/// One decision: fault this request so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    pub kind: Kind,
    /// Strike after the real handling (its effects happen, its answer is lost).
    pub after: bool,
    /// `slow`: the delay; `timeout`: the longest hold; `slow_body`: the pause between pieces.
    pub delay: Duration,
    /// A free draw for the surface to pick a variant (which status, which body).
    pub pick: u64,
}

impl Fault {
    /// A variant index in `0..n`.
    pub fn variant(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.pick % n
        }
    }

    /// `Retry-After` seconds for a 429: 1..=3.
    pub fn retry_after_s(&self) -> u64 {
        1 + (self.pick >> 8) % 3
    }
}

/// Counters of one chaos session.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChaosStats {
    pub active: bool,
    pub spec: Option<ChaosSpec>,
    /// Eligible requests seen while on.
    pub seen: u64,
    pub faulted: u64,
    pub by_kind: BTreeMap<String, u64>,
}

struct Session {
    spec: ChaosSpec,
    kinds: Vec<Kind>,
    rng: u64,
    seen: u64,
    faulted: u64,
    by_kind: BTreeMap<String, u64>,
}

/// The chaos switch of one surface.
pub struct Chaos {
    supported: &'static [Kind],
    default_hold: Duration,
    session: Mutex<Option<Session>>,
    /// Counters of the last session, kept after it was switched off.
    last: Mutex<ChaosStats>,
}

/// SplitMix64: small, seedable, good enough for test faults.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

impl Chaos {
    /// A switch (off) for a surface that supports `supported`, holding `timeout`s at most
    /// `default_hold` unless a spec says otherwise.
    pub fn new(supported: &'static [Kind], default_hold: Duration) -> Chaos {
        Chaos {
            supported,
            default_hold,
            session: Mutex::new(None),
            last: Mutex::new(ChaosStats::default()),
        }
    }

    /// Switches chaos on (replacing a running session and its counters).
    pub fn set(&self, spec: ChaosSpec) -> Result<(), String> {
        if !(spec.rate.is_finite() && (0.0..=1.0).contains(&spec.rate)) {
            return Err(format!("rate must be within 0..=1, got {}", spec.rate));
        }
        let kinds = if spec.kinds.is_empty() {
            self.supported.to_vec()
        } else {
            spec.kinds.clone()
        };
        if let Some(k) = kinds.iter().find(|k| !self.supported.contains(k)) {
            let names: Vec<&str> = self.supported.iter().map(|k| k.name()).collect();
            return Err(format!(
                "kind {:?} is not supported here (supported: {})",
                k.name(),
                names.join(", ")
            ));
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        *session = Some(Session {
            rng: spec.seed ^ 0x05EE_D0FC_4A05_u64,
            spec,
            kinds,
            seen: 0,
            faulted: 0,
            by_kind: BTreeMap::new(),
        });
        Ok(())
    }

    /// Switches chaos off; the session's counters.
    pub fn clear(&self) -> ChaosStats {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = session.take() {
            let stats = ChaosStats {
                active: false,
                spec: Some(s.spec),
                seen: s.seen,
                faulted: s.faulted,
                by_kind: s.by_kind,
            };
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats.clone();
            stats
        } else {
            self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
    }

    /// The running session's counters (or the last one's).
    pub fn stats(&self) -> ChaosStats {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        match session.as_ref() {
            Some(s) => ChaosStats {
                active: true,
                spec: Some(s.spec.clone()),
                seen: s.seen,
                faulted: s.faulted,
                by_kind: s.by_kind.clone(),
            },
            None => self.last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Whether chaos is on.
    pub fn active(&self) -> bool {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// One decision for an eligible request; `fits` says which kinds this route can take (a
    /// `slow_body` needs a download). A request drawn for faulting whose route fits none of the
    /// session's kinds goes through unfaulted.
    pub fn decide(
        &self,
        headers: &axum::http::HeaderMap,
        fits: impl Fn(Kind) -> bool,
    ) -> Option<Fault> {
        if headers.contains_key(EXEMPT_HEADER) {
            return None;
        }
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let s = guard.as_mut()?;
        s.seen += 1;
        let hit = unit(&mut s.rng) < s.spec.rate;
        let pick_kind = next(&mut s.rng);
        let pick = next(&mut s.rng);
        let after = next(&mut s.rng) & 1 == 1;
        let jitter = unit(&mut s.rng);
        if !hit {
            return None;
        }
        let fitting: Vec<Kind> = s.kinds.iter().copied().filter(|k| fits(*k)).collect();
        if fitting.is_empty() {
            return None;
        }
        let kind = fitting[(pick_kind % fitting.len() as u64) as usize];
        let delay = match kind {
            Kind::Slow => {
                let max = s.spec.slow_ms.unwrap_or(4000).max(1);
                Duration::from_millis(200 + (jitter * max as f64) as u64)
            }
            Kind::Timeout => s
                .spec
                .hold_ms
                .map(Duration::from_millis)
                .unwrap_or(self.default_hold),
            Kind::SlowBody => Duration::from_millis(20 + (jitter * 80.0) as u64),
            _ => Duration::ZERO,
        };
        s.faulted += 1;
        *s.by_kind.entry(kind.name().to_string()).or_insert(0) += 1;
        Some(Fault {
            kind,
            after: after && matches!(kind, Kind::Reset | Kind::Timeout),
            delay,
            pick,
        })
    }

    /// Serves a control request: `POST` a [`ChaosSpec`] (on), `DELETE` (off; the counters),
    /// `GET` (the counters). Returns (status, JSON body).
    pub fn control(&self, method: &axum::http::Method, body: &[u8]) -> (u16, Value) {
        use axum::http::Method;
        match *method {
            Method::POST => match serde_json::from_slice::<ChaosSpec>(body) {
                Ok(spec) => match self.set(spec) {
                    Ok(()) => (200, json!(self.stats())),
                    Err(e) => (400, json!({"message": e})),
                },
                Err(e) => (400, json!({"message": format!("invalid chaos spec: {e}")})),
            },
            Method::DELETE => (200, json!(self.clear())),
            Method::GET => (200, json!(self.stats())),
            _ => (405, json!({"message": "use GET, POST or DELETE"})),
        }
    }
}

/// A response body that fails at once: hyper then drops the connection without completing the
/// answer, which the client sees as a connection reset / "connection closed before message
/// completed" (a network error, never an HTTP status).
pub fn reset_body() -> Body {
    Body::from_stream(futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "chaos: connection reset",
        ))
    }))
}

/// `body` re-cut into pieces of at most `piece` bytes with `pause` before each: a slow download
/// that still delivers every byte.
pub fn trickle(body: Body, piece: usize, pause: Duration) -> Body {
    let piece = piece.max(1);
    let stream = body.into_data_stream().flat_map(move |chunk| {
        let parts: Vec<Result<Bytes, axum::Error>> = match chunk {
            Ok(bytes) => {
                let mut out = Vec::new();
                let mut at = 0;
                while at < bytes.len() {
                    let end = (at + piece).min(bytes.len());
                    out.push(Ok(bytes.slice(at..end)));
                    at = end;
                }
                out
            }
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(parts)
    });
    let paced = stream.then(move |part| async move {
        tokio::time::sleep(pause).await;
        part
    });
    Body::from_stream(paced)
}

/// Holds a request: waits `limit` (the server drops this future earlier if the client hangs up).
pub async fn hold(limit: Duration) {
    tokio::time::sleep(limit).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    const ALL: &[Kind] = &[
        Kind::ServerError,
        Kind::RateLimited,
        Kind::Slow,
        Kind::Timeout,
        Kind::Reset,
        Kind::SlowBody,
    ];

    fn spec(rate: f64, seed: u64) -> ChaosSpec {
        ChaosSpec {
            rate,
            seed,
            kinds: vec![],
            hold_ms: None,
            slow_ms: None,
        }
    }

    #[test]
    fn off_by_default_and_exempt_header() {
        let c = Chaos::new(ALL, Duration::from_secs(1));
        assert!(c.decide(&HeaderMap::new(), |_| true).is_none());
        c.set(spec(1.0, 1)).unwrap();
        let mut h = HeaderMap::new();
        h.insert(EXEMPT_HEADER, "1".parse().unwrap());
        assert!(c.decide(&h, |_| true).is_none());
        assert!(c.decide(&HeaderMap::new(), |_| true).is_some());
    }

    #[test]
    fn rate_is_respected_and_reproducible() {
        let run = |seed| {
            let c = Chaos::new(ALL, Duration::from_secs(1));
            c.set(spec(0.2, seed)).unwrap();
            let faults: Vec<Option<Fault>> = (0..5000)
                .map(|_| c.decide(&HeaderMap::new(), |_| true))
                .collect();
            (faults, c.clear())
        };
        let (a, stats) = run(42);
        let (b, _) = run(42);
        let (c, _) = run(43);
        assert_eq!(a, b, "same seed, same faults");
        assert_ne!(a, c, "another seed, other faults");
        let rate = stats.faulted as f64 / stats.seen as f64;
        assert!((0.18..0.22).contains(&rate), "rate {rate}");
        // Every kind drawn, roughly evenly.
        for k in ALL {
            let n = stats.by_kind.get(k.name()).copied().unwrap_or(0);
            assert!(n > 100, "{}: {n}", k.name());
        }
    }

    #[test]
    fn only_fitting_kinds_and_unknown_kinds_refused() {
        let c = Chaos::new(&[Kind::ServerError, Kind::Reset], Duration::from_secs(1));
        let mut s = spec(1.0, 3);
        s.kinds = vec![Kind::SlowBody];
        assert!(c.set(s).unwrap_err().contains("slow_body"));
        c.set(spec(1.0, 3)).unwrap();
        for _ in 0..100 {
            let f = c.decide(&HeaderMap::new(), |k| k == Kind::Reset).unwrap();
            assert_eq!(f.kind, Kind::Reset);
        }
        assert!(c.decide(&HeaderMap::new(), |_| false).is_none());
        assert!(c.set(spec(1.5, 0)).is_err());
    }

    #[test]
    fn spec_parses_kind_names() {
        let s: ChaosSpec = serde_json::from_str(
            r#"{"rate":0.2,"seed":9,"kinds":["5xx","503","429","slow","timeout","reset","slow_body"]}"#,
        )
        .unwrap();
        assert_eq!(s.kinds.len(), 7);
        assert!(serde_json::from_str::<ChaosSpec>(r#"{"rate":0.2,"sede":1}"#).is_err());
    }

    #[tokio::test]
    async fn reset_is_a_network_error_and_trickle_keeps_every_byte() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/reset",
                get(|| async { axum::http::Response::new(reset_body()) }),
            )
            .route(
                "/slow",
                get(|| async {
                    axum::http::Response::new(trickle(
                        Body::from(vec![7u8; 10_000]),
                        1000,
                        Duration::from_millis(10),
                    ))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let r = http.get(format!("http://{addr}/reset")).send().await;
        let failed = match r {
            Err(_) => true,
            Ok(resp) => resp.bytes().await.is_err(),
        };
        assert!(failed, "a reset must end as a network error");
        let t0 = std::time::Instant::now();
        let body = http
            .get(format!("http://{addr}/slow"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 10_000);
        assert!(body.iter().all(|b| *b == 7));
        assert!(t0.elapsed() >= Duration::from_millis(90));
    }
}
