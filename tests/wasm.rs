//! WebAssembly tests (`cargo test --target wasm32-unknown-unknown`, run under Node by
//! wasm-bindgen-test-runner): the code that must behave the same inside the Workers runtime —
//! the JSON error layer through real `Response` objects, config, ids, log lines and `net::send`'s
//! one call into `fetch`.
#![cfg(target_arch = "wasm32")]

use makeit3d_bff::core::config::Config;
use makeit3d_bff::core::error::{ApiError, FieldError};
use makeit3d_bff::core::ids::{row_id, TaskId};
use makeit3d_bff::core::step::Step;
use makeit3d_bff::reply::{respond, Reply};
use wasm_bindgen_test::wasm_bindgen_test;

/// `reply::respond`'s answer, as `worker` reads it.
fn answer(reply: Result<Reply, ApiError>, origin: &str, head: bool) -> worker::Response {
    worker::Response::from(respond(reply, origin, head).unwrap())
}

fn header(resp: &worker::Response, name: &str) -> Option<String> {
    resp.headers().get(name).unwrap()
}

#[wasm_bindgen_test]
async fn error_response_has_status_headers_and_shape() {
    let e = ApiError::Validation(vec![FieldError::new("n", "must be between 1 and 10")]);
    let mut resp = answer(Err(e), "*", false);
    assert_eq!(resp.status_code(), 422);
    let ct = header(&resp, "content-type").unwrap();
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&resp, "vary"), None);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "validation_error");
    assert_eq!(v["error"]["details"][0]["field"], "n");
}

#[wasm_bindgen_test]
fn method_not_allowed_sets_allow() {
    let e = ApiError::MethodNotAllowed {
        method: "DELETE".into(),
        allowed: "GET, HEAD, OPTIONS".into(),
    };
    let resp = answer(Err(e), "*", false);
    assert_eq!(resp.status_code(), 405);
    assert_eq!(
        header(&resp, "allow").as_deref(),
        Some("GET, HEAD, OPTIONS")
    );
}

#[wasm_bindgen_test]
fn headers_of_one_answer_never_reach_the_next() {
    // The headers shared by answers without headers of their own are made once per isolate: an
    // error's own header (`Allow`) must not end up in them, nor a JSON type in an empty answer.
    let first = answer(Ok(Reply::Empty(204)), "*", false);
    let e = ApiError::MethodNotAllowed {
        method: "PUT".into(),
        allowed: "GET".into(),
    };
    let refused = answer(Err(e), "*", false);
    assert_eq!(header(&refused, "allow").as_deref(), Some("GET"));
    let reply = Reply::Json {
        status: 200,
        body: "{}".to_owned(),
    };
    for resp in [
        answer(Ok(reply), "*", false),
        answer(Ok(Reply::Empty(204)), "*", false),
    ] {
        assert_eq!(header(&resp, "allow"), None);
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some("*")
        );
    }
    assert_eq!(header(&first, "content-type"), None);
    let again = answer(Ok(Reply::Empty(204)), "*", false);
    assert_eq!(header(&again, "content-type"), None);
}

#[wasm_bindgen_test]
async fn json_response_round_trips_with_cors_of_a_named_origin() {
    let reply = Reply::Json {
        status: 202,
        body: r#"{"task_id":"t-1"}"#.to_owned(),
    };
    let mut resp = answer(Ok(reply), "https://app.example", false);
    assert_eq!(resp.status_code(), 202);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(header(&resp, "vary").as_deref(), Some("origin"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["task_id"], "t-1");
}

#[wasm_bindgen_test]
async fn head_keeps_the_headers_without_the_body_and_empty_has_no_type() {
    let reply = Reply::Json {
        status: 200,
        body: r#"{"status":"ok"}"#.to_owned(),
    };
    let mut resp = answer(Ok(reply), "*", true);
    assert_eq!(resp.status_code(), 200);
    assert!(header(&resp, "content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(resp.text().await.unwrap(), "");
    let mut empty = answer(Ok(Reply::Empty(204)), "*", false);
    assert_eq!(empty.status_code(), 204);
    assert_eq!(header(&empty, "content-type"), None);
    assert_eq!(
        header(&empty, "access-control-max-age").as_deref(),
        Some("86400")
    );
    assert_eq!(empty.text().await.unwrap(), "");
}

#[wasm_bindgen_test]
fn config_and_ids_behave_as_natively() {
    let problems = Config::load(|_| None).unwrap_err().problems;
    assert!(problems.iter().any(|p| p.name == "SUPABASE_URL"));
    let t = TaskId::parse("t-1").unwrap();
    // Same value as the native build computes: v5 is deterministic across targets.
    assert_eq!(
        row_id(&t, Step::Model, 0),
        row_id(&TaskId::parse("t-1").unwrap(), Step::Model, 0)
    );
    assert_eq!(row_id(&t, Step::Model, 0).get_version_num(), 5);
}

#[wasm_bindgen_test]
fn query_string_is_what_the_url_crate_parses() {
    // api::query_string cuts the query from the runtime's URL text instead of parsing it with
    // `Request::url()` (the url crate stays out of the bundle): the same text for every shape.
    for url in [
        "https://w.example/tasks/t-1/status",
        "https://w.example/tasks/t-1/status?",
        "https://w.example/tasks/t-1/status?step=model",
        "https://w.example/tasks/t-1/events?access_token=a.b.c&last_event_id=3&step=model",
        "https://w.example/tasks/t%3F1/status?service=tripoai&x=%20y+z",
        "https://w.example/tasks/t-1/status?step=model#frag",
        "http://127.0.0.1:8787/tasks/t-1/cancel?a=1?b=2",
    ] {
        let req = worker::Request::new(url, worker::Method::Get).unwrap();
        let parsed = req.url().unwrap();
        assert_eq!(
            makeit3d_bff::api::query_string(&req),
            parsed.query().unwrap_or(""),
            "{url}"
        );
    }
}

/// A task record that an earlier build stored as an object (`Storage::put` of the Rust value:
/// `serde_wasm_bindgen`, maps as `Map`s, `None` as `undefined`) reads back equal through
/// `record::object_json` and `serde_json`, without `serde_wasm_bindgen`'s deserializer.
#[wasm_bindgen_test]
fn a_record_stored_as_an_object_reads_back_through_its_json() {
    use makeit3d_bff::core::ids::UserId;
    use makeit3d_bff::core::jobs::JobKind;
    use makeit3d_bff::core::request::{parse, Endpoint};
    use makeit3d_bff::core::task::{apply, Command, StepError, Submission};

    let body =
        br#"{"task_id":"t-old","prompt":"a chair","texture_quality":"detailed","face_limit":5000}"#;
    let valid = parse(Endpoint::TextToModel, body).unwrap();
    let submit = Command::Submit(Submission {
        owner: UserId(uuid::Uuid::from_u128(9)),
        task_id: valid.task_id.clone(),
        request: valid.request,
        deadline_ms: 1_800_000,
    });
    let (state, _) = apply(None, submit, 1_000).unwrap();
    let claim = Command::ClaimJob {
        step: Step::Model,
        attempt: 1,
        kind: JobKind::Run,
        lease_ms: 60_000,
        create: true,
    };
    let (state, _) = apply(Some(state), claim, 2_000).unwrap();
    let fail = Command::Fail {
        step: Step::Model,
        attempt: 1,
        error: StepError::new("content_policy", "refused"),
    };
    let (state, _) = apply(Some(state), fail, 3_000).unwrap();
    let stored = serde_wasm_bindgen::to_value(&state).unwrap();
    let text = makeit3d_bff::record::object_json(&stored).unwrap();
    let back: makeit3d_bff::core::task::TaskState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
}

/// `net::send` (one call into JavaScript): a reply's status, headers and body come back whole;
/// the request's headers reach `fetch` as given (a `data:` URL answers without a network).
#[wasm_bindgen_test]
async fn a_small_request_reads_status_headers_and_body_in_one_call() {
    use makeit3d_bff::net::{send, Body};
    let reply = send(
        worker::Method::Get,
        "data:application/json,%7B%22a%22%3A1%7D",
        &[("accept", "application/json"), ("x-trace", "a:b: c")],
        Body::Empty,
        5_000,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(reply.text(), r#"{"a":1}"#);
}

/// A header with a line break is refused before anything is sent (it would split into two
/// headers on the way to JavaScript); a refused connection is a network error, not a timeout.
#[wasm_bindgen_test]
async fn a_broken_header_is_refused_and_a_refused_connection_is_a_network_error() {
    use makeit3d_bff::net::{send, Body, NetError};
    let bad = send(
        worker::Method::Get,
        "data:text/plain,x",
        &[("x-a", "one\nx-b: two")],
        Body::Empty,
        5_000,
    )
    .await;
    assert!(matches!(bad, Err(NetError::Invalid(_))), "{:?}", bad.err());
    let refused = send(
        worker::Method::Post,
        "http://127.0.0.1:9/",
        &[("content-type", "application/json")],
        Body::Text("{}".into()),
        5_000,
    )
    .await;
    assert!(
        matches!(refused, Err(NetError::Network(_))),
        "{:?}",
        refused.err()
    );
}

/// Servers on 127.0.0.1 (Node's `net`) that accept and then stall: `head` never answers,
/// `body` sends a head and two of its ten body bytes, then nothing.
mod stalling {
    use wasm_bindgen::prelude::wasm_bindgen;

    #[wasm_bindgen(inline_js = r#"
export async function stalling_server(mode) {
  const net = await import('node:net');
  const sockets = new Set();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => {
      if (mode === 'body') s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab');
    });
  });
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok));
  return { port: srv.address().port, close: () => { for (const s of sockets) s.destroy(); srv.close(); } };
}
"#)]
    extern "C" {
        pub fn stalling_server(mode: &str) -> js_sys::Promise;
    }
}

/// `net::send`'s timeout covers the whole exchange: no answer at all, and an answer whose body
/// stops halfway, both end as `Timeout` (not `Network`) after about the time given.
#[wasm_bindgen_test]
async fn a_stalled_answer_or_body_is_a_timeout() {
    use makeit3d_bff::net::{send, Body, NetError};
    use wasm_bindgen::JsCast;
    for mode in ["head", "body"] {
        let server = wasm_bindgen_futures::JsFuture::from(stalling::stalling_server(mode))
            .await
            .unwrap();
        let port = js_sys::Reflect::get(&server, &"port".into())
            .unwrap()
            .as_f64()
            .unwrap();
        let started = js_sys::Date::now();
        let got = send(
            worker::Method::Get,
            &format!("http://127.0.0.1:{port}/"),
            &[],
            Body::Empty,
            300,
        )
        .await;
        let took = js_sys::Date::now() - started;
        let close: js_sys::Function = js_sys::Reflect::get(&server, &"close".into())
            .unwrap()
            .unchecked_into();
        close.call0(&server).unwrap();
        assert!(
            matches!(got, Err(NetError::Timeout(300))),
            "{mode}: {:?}",
            got.err()
        );
        assert!((250.0..5_000.0).contains(&took), "{mode}: {took} ms");
    }
}
