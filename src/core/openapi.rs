//! `GET /openapi.json`: the OpenAPI 3.1 document of the whole API, generated from the same tables
//! the code validates with (`core::request::fields`), so the two cannot drift. Tests below fail
//! when a route or field exists in code but not in the document, or the reverse. Pure.

use serde_json::{json, Map, Value};

use crate::request::{add_url_pattern, body_schema_with_url_pattern, task_id_schema, Endpoint};
use crate::storage_path::{input_url_pattern, Origin};

fn error_schema() -> Value {
    json!({
        "type": "object", "required": ["error"], "additionalProperties": false,
        "properties": { "error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": false,
            "properties": {
                "code": { "type": "string", "enum": [
                    "malformed_json", "unauthorized", "anonymous_not_allowed", "not_found", "method_not_allowed", "task_conflict", "upgrade_required",
                    "payload_too_large", "unsupported_media_type", "validation_error", "input_asset_not_found",
                    "rate_limited", "misconfigured", "dependency_failed", "dependency_unavailable", "internal_error"
                ]},
                "message": { "type": "string" },
                "details": { "type": "array",
                    "description": "422: one entry per field problem. 429: one entry naming the limit that refused the submit.",
                    "items": { "anyOf": [
                        { "type": "object", "required": ["field", "message"],
                          "properties": { "field": { "type": "string" }, "message": { "type": "string" } } },
                        { "type": "object", "required": ["limit", "message"],
                          "properties": {
                              "limit": { "type": "string", "enum": ["submits_per_minute", "active_steps", "submit_requests_per_minute"],
                                  "description": "submits_per_minute: RATE_LIMIT_SUBMITS_PER_MINUTE(_ANONYMOUS), accepted submits in the last 60 s; active_steps: MAX_ACTIVE_STEPS_PER_USER(_ANONYMOUS), steps not yet complete or failed; submit_requests_per_minute: the flood guard on every submit request." },
                              "max": { "type": "integer", "minimum": 1, "description": "The limit (absent for the flood guard)." },
                              "message": { "type": "string" } } }
                    ]}
                }
            }
        }}
    })
}

/// Properties of the submit answer (202 new, 200 idempotent repeat).
pub const SUBMIT_FIELDS: [&str; 5] = ["task_id", "step", "status", "status_url", "celery_task_id"];

/// The status answer (`include_task`: the top level, with `task_id`, `updated_at` and `steps`)
/// or one entry of its `steps`.
fn step_schema(include_task: bool) -> Value {
    let mut props = Map::new();
    if include_task {
        props.insert("task_id".into(), json!({ "type": "string" }));
    }
    props.insert(
        "step".into(),
        json!({ "type": "string", "enum": ["concepts", "model", "refine"] }),
    );
    props.insert(
        "service".into(),
        json!({ "type": "string", "enum": ["openai", "tripoai"] }),
    );
    props.insert(
        "status".into(),
        json!({ "type": "string", "enum": ["pending", "processing", "complete", "failed"] }),
    );
    props.insert(
        "progress".into(),
        json!({ "type": "integer", "minimum": 0, "maximum": 100 }),
    );
    props.insert(
        "asset_url".into(),
        json!({ "type": ["string", "null"], "description": "The first output." }),
    );
    props.insert(
        "asset_urls".into(),
        json!({ "type": "array", "items": { "type": "string" }, "description": "Every output (n concept images, or one model)." }),
    );
    props.insert(
        "error".into(),
        json!({ "anyOf": [{ "type": "null" }, { "type": "object", "required": ["code", "message"],
            "properties": { "code": { "type": "string" }, "message": { "type": "string" } } }] }),
    );
    props.insert(
        "queue_position".into(),
        json!({ "type": "integer", "minimum": 1, "description": "Only while the step waits for a provider slot (`pending`): its place in line, 1 = first, as the gate has it now. Absent otherwise." }),
    );
    if include_task {
        props.insert(
            "updated_at".into(),
            json!({ "type": "string", "format": "date-time", "description": "When the selected step last changed: RFC 3339 UTC with milliseconds, e.g. `2026-11-24T10:00:00.042Z` (the time of the command that changed it)." }),
        );
        props.insert(
            "steps".into(),
            json!({ "type": "array", "items": { "$ref": "#/components/schemas/StepStatus" } }),
        );
    }
    // `queue_position` is present only while a step waits for a provider slot.
    let keys: Vec<Value> = props
        .keys()
        .filter(|k| *k != "queue_position")
        .map(|k| Value::from(k.as_str()))
        .collect();
    json!({ "type": "object", "required": keys, "properties": props })
}

fn errors(codes: &[u16]) -> Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({ "$ref": format!("#/components/responses/E{c}") }),
            )
        })
        .collect()
}

fn schema_name(e: Endpoint) -> String {
    e.name()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<String>()
        + "Request"
}

/// The whole document. With the configured Supabase `origin`, every input URL field carries the
/// URL policy (SPEC §4.1) as its `pattern`.
pub fn document(origin: Option<&Origin>) -> Value {
    document_for(origin, None)
}

/// [`document`] for a deployment whose `WEBHOOK_ALLOWED_HOSTS` is `webhook_hosts`: the
/// `webhook_url` fields carry its rule as a pattern (an empty list: only `null` is valid, since
/// every `webhook_url` is refused).
pub fn document_for(origin: Option<&Origin>, webhook_hosts: Option<&[String]>) -> Value {
    let mut doc = base_document();
    deploy(&mut doc, origin, webhook_hosts);
    doc
}

/// Fits the base document ([`document_for`]`(None, None)`) to a deployment: its Supabase
/// `origin` and its webhook hosts. The worker builds the base at compile time (its `build.rs`)
/// and calls only this at run time, once per isolate.
pub fn deploy(doc: &mut Value, origin: Option<&Origin>, webhook_hosts: Option<&[String]>) {
    let url_pattern = origin.map(input_url_pattern);
    for e in Endpoint::ALL {
        let Some(props) = doc.pointer_mut(&format!(
            "/components/schemas/{}/properties",
            schema_name(e)
        )) else {
            continue;
        };
        if let Some(pattern) = &url_pattern {
            add_url_pattern(props, pattern);
        }
        if let (Some(hosts), Some(prop)) = (webhook_hosts, props.get_mut("webhook_url")) {
            let description = prop["description"].clone();
            *prop = match crate::webhook::url_pattern(hosts) {
                Some(p) => json!({ "anyOf": [
                    { "type": "string", "maxLength": crate::webhook::MAX_WEBHOOK_URL_LEN, "pattern": p },
                    { "type": "null" }], "description": description }),
                None => {
                    json!({ "type": "null", "description": format!("{} This deployment accepts no webhooks (WEBHOOK_ALLOWED_HOSTS is empty).", description.as_str().unwrap_or_default()) })
                }
            };
        }
    }
}

/// The document of no deployment: no origin rule, every `webhook_url` as documented.
fn base_document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for e in Endpoint::ALL {
        let name = schema_name(e);
        schemas.insert(name.clone(), body_schema_with_url_pattern(e, None));
        let mut responses = errors(&[400, 401, 403, 409, 413, 415, 422, 429, 500, 502, 503]);
        responses.insert("202".into(), json!({ "description": "Accepted: the step was created and its job enqueued.",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubmitResponse" } } } }));
        responses.insert("200".into(), json!({ "description": "The same request again: the current state of the step; nothing new starts.",
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubmitResponse" } } } }));
        paths.insert(e.path().into(), json!({ "post": {
            "operationId": e.name().replace('-', "_"),
            "summary": format!("Start the `{}` step", e.step().as_str()),
            "security": [{ "bearerAuth": [] }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } } },
            "responses": responses,
        }}));
    }
    let mut status_responses = errors(&[401, 403, 404, 422, 500, 503]);
    status_responses.insert("200".into(), json!({ "description": "The task's state, from its Durable Object.",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/StatusResponse" } } } }));
    paths.insert("/tasks/{task_id}/status".into(), json!({ "get": {
        "operationId": "task_status",
        "summary": "Status of a task's step (never calls a provider)",
        "security": [{ "bearerAuth": [] }],
        "parameters": [
            { "name": "task_id", "in": "path", "required": true, "schema": task_id_schema(),
              "description": "The client's task id (an id that is not a valid task id is an unknown task: 404)." },
            { "name": "step", "in": "query", "description": "The step to show. Neither `step` nor `service`: the most recently submitted step.",
              "schema": { "type": "string", "enum": ["concepts", "model", "refine"] } },
            { "name": "service", "in": "query", "deprecated": true,
              "description": "The original service's selector: `openai` is the concepts step; `tripoai` (alias `tripo`) the most recently submitted of model and refine. Ignored when `step` is given.",
              "schema": { "type": "string", "enum": ["openai", "tripoai", "tripo"] } }
        ],
        "responses": status_responses,
    }}));
    let task_param =
        json!({ "name": "task_id", "in": "path", "required": true, "schema": task_id_schema() });
    let step_param = json!({ "name": "step", "in": "query", "description": "The step whose view is sent (as for the status endpoint). Absent: the most recently submitted step.",
        "schema": { "type": "string", "enum": ["concepts", "model", "refine"] } });
    let token_param = json!({ "name": "access_token", "in": "query", "description": "The Supabase access token, for clients that cannot set `Authorization` (EventSource, WebSocket). Never logged.",
        "schema": { "type": "string" } });
    let mut events_responses = errors(&[401, 403, 404, 422, 500, 503]);
    events_responses.insert("200".into(), json!({ "description": "`text/event-stream`: a `status` event now (unless `Last-Event-ID` is current) and on every change, `id` = the task's change counter, `data` = the status view (StatusResponse) exactly as the status endpoint shows it at that moment (the live `queue_position`; fresh signed URLs for a private bucket); a `: heartbeat` comment every 15 s; the stream ends when every step is final.",
        "content": { "text/event-stream": { "schema": { "type": "object",
            "properties": { "id": { "type": "string", "pattern": "^[0-9]+$" }, "event": { "type": "string", "enum": ["status"] },
                "data": { "type": "string", "contentMediaType": "application/json", "description": "A StatusResponse as JSON." } } } } } }));
    events_responses.insert("204".into(), json!({ "description": "`Last-Event-ID` is current and every step is final: nothing more will come (EventSource stops reconnecting)." }));
    paths.insert("/tasks/{task_id}/events".into(), json!({ "get": {
        "operationId": "task_events",
        "summary": "Live status as Server-Sent Events, pushed by the task's Durable Object",
        "security": [{ "bearerAuth": [] }],
        "parameters": [task_param.clone(), step_param.clone(), token_param.clone(),
            { "name": "Last-Event-ID", "in": "header", "description": "The last event id received: a current id skips the first event.", "schema": { "type": "string" } },
            { "name": "last_event_id", "in": "query", "description": "As `Last-Event-ID`, for clients that cannot set headers.", "schema": { "type": "integer", "minimum": 0, "maximum": crate::live::MAX_EVENT_ID } }],
        "responses": events_responses,
    }}));
    let mut ws_responses = errors(&[401, 403, 404, 422, 426, 500, 503]);
    ws_responses.insert("101".into(), json!({ "description": "A WebSocket that receives the status view (StatusResponse JSON) now and on every change, closed with 1000 when every step is final. Send `ping` to get the current view again." }));
    paths.insert(
        "/tasks/{task_id}/ws".into(),
        json!({ "get": {
            "operationId": "task_ws",
            "summary": "Live status over a WebSocket (hibernating Durable Object)",
            "security": [{ "bearerAuth": [] }],
            "parameters": [task_param.clone(), step_param.clone(), token_param],
            "responses": ws_responses,
        }}),
    );
    let mut cancel_responses = errors(&[401, 403, 404, 422, 500, 502, 503]);
    cancel_responses.insert("200".into(), json!({ "description": "The status view after the cancel. Unfinished steps are `failed` with error code `cancelled`; a final step is unchanged (a repeat is harmless). The provider task may still run.",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/StatusResponse" } } } }));
    paths.insert("/tasks/{task_id}/cancel".into(), json!({ "post": {
        "operationId": "task_cancel",
        "summary": "Cancel the task's unfinished steps (or one step)",
        "security": [{ "bearerAuth": [] }],
        "parameters": [task_param, { "name": "step", "in": "query", "description": "Cancel only this step (404 if the task has none). Absent: every unfinished step.",
            "schema": { "type": "string", "enum": ["concepts", "model", "refine"] } }],
        "responses": cancel_responses,
    }}));
    paths.insert("/health".into(), json!({ "get": { "operationId": "health", "summary": "Liveness and configuration report (names, never values)",
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object",
            "properties": { "status": { "type": "string", "enum": ["ok", "misconfigured"] }, "service": { "type": "string" },
                "version": { "type": "string" }, "auth_mode": { "type": "string" }, "local_only": { "type": "boolean" },
                "problems": { "type": "array" } } } } } } } } }));
    paths.insert("/playground/config.json".into(), json!({ "get": { "operationId": "playground_config",
        "summary": "The playground page's public configuration: the Supabase URL, its publishable (anon) key, the auth mode (never a secret)",
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object",
            "required": ["supabase_url", "supabase_anon_key", "auth_mode", "local_only", "anonymous_users", "input_bucket", "max_input_bytes"],
            "properties": { "supabase_url": { "type": "string" }, "supabase_anon_key": { "type": ["string", "null"] },
                "auth_mode": { "type": "string", "enum": ["supabase", "none"] }, "local_only": { "type": "boolean" },
                "anonymous_users": { "type": "boolean" }, "input_bucket": { "type": "string" },
                "max_input_bytes": { "type": "integer" } } } } } },
            "503": { "$ref": "#/components/responses/E503" } } } }));
    paths.insert("/openapi.json".into(), json!({ "get": { "operationId": "openapi", "summary": "This document",
        "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } } } }));

    let mut submit_props = Map::new();
    submit_props.insert("task_id".into(), json!({ "type": "string" }));
    submit_props.insert(
        "step".into(),
        json!({ "type": "string", "enum": ["concepts", "model", "refine"] }),
    );
    submit_props.insert(
        "status".into(),
        json!({ "type": "string", "enum": ["pending", "processing", "complete", "failed"] }),
    );
    submit_props.insert("status_url".into(), json!({ "type": "string" }));
    submit_props.insert("celery_task_id".into(), json!({ "type": "string", "deprecated": true, "description": "Equals task_id; kept for clients of the original service." }));
    schemas.insert(
        "SubmitResponse".into(),
        json!({ "type": "object", "required": SUBMIT_FIELDS, "properties": submit_props }),
    );
    schemas.insert("StatusResponse".into(), step_schema(true));
    schemas.insert("StepStatus".into(), step_schema(false));
    schemas.insert("Error".into(), error_schema());

    let mut responses = Map::new();
    for (code, what) in [
        (400, "Malformed JSON"), (401, "Missing or invalid token"),
        (403, "anonymous_not_allowed: a Supabase anonymous sign-in, while ANONYMOUS_USERS is not allow"), (404, "Unknown task, or a task of another user"),
        (409, "task_conflict: a different body for a step that is pending, processing or complete, or a task of another user"),
        (413, "Body too large"), (415, "Not JSON"), (426, "upgrade_required: the WebSocket route without `Upgrade: websocket`"), (422, "validation_error or input_asset_not_found, with per-field details"),
        (429, "rate_limited: a per-user limit refused the submit; nothing was created. Retry-After (seconds) says when to try again; details[0].limit names the limit"), (500, "Internal error"), (502, "A dependency failed during submit; nothing was left half-made"),
        (503, "A dependency is unavailable, or the service is misconfigured"),
    ] {
        let mut response = json!({ "description": what,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
        if code == 429 {
            response["headers"] = json!({ "Retry-After": { "required": true,
                "description": "Seconds until a submit may be accepted.",
                "schema": { "type": "integer", "minimum": 1 } } });
        }
        responses.insert(format!("E{code}"), response);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "makeit3d-bff", "version": env!("CARGO_PKG_VERSION"),
            "description": "Backend-for-frontend of MakeIt3D. The client makes one task_id per workflow; inputs are Supabase Storage URLs; outputs go to Supabase Storage and the concept_images / models tables." },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A Supabase user access token." } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::fields;
    use crate::route::route;

    fn doc() -> Value {
        document(Some(&Origin::parse("https://abc.supabase.co").unwrap()))
    }

    #[test]
    fn every_documented_operation_is_routed() {
        let d = doc();
        for (path, ops) in d["paths"].as_object().unwrap() {
            let concrete = path.replace("{task_id}", "t-1");
            for method in ops.as_object().unwrap().keys() {
                let m = method.to_ascii_uppercase();
                assert!(
                    route(&m, &concrete).is_ok(),
                    "{m} {path} is documented but not routed"
                );
            }
        }
    }

    #[test]
    fn every_route_is_documented() {
        let d = doc();
        let paths = d["paths"].as_object().unwrap();
        for e in Endpoint::ALL {
            let p = e.path();
            assert!(
                paths.get(p).and_then(|o| o.get("post")).is_some(),
                "{p} is routed but not documented"
            );
        }
        for (m, p) in [
            ("get", "/health"),
            ("get", "/openapi.json"),
            ("get", "/playground/config.json"),
            ("get", "/tasks/{task_id}/status"),
            ("get", "/tasks/{task_id}/events"),
            ("get", "/tasks/{task_id}/ws"),
            ("post", "/tasks/{task_id}/cancel"),
        ] {
            assert!(
                paths.get(p).and_then(|o| o.get(m)).is_some(),
                "{m} {p} is routed but not documented"
            );
        }
        assert_eq!(
            paths.len(),
            Endpoint::ALL.len() + 7,
            "documented paths: {:?}",
            paths.keys()
        );
    }

    #[test]
    fn request_fields_match_the_validator_exactly() {
        let d = doc();
        for e in Endpoint::ALL {
            let schema = &d["components"]["schemas"][schema_name(e)];
            let mut documented: Vec<&str> = schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut code: Vec<&str> = fields(e).iter().map(|f| f.name).collect();
            documented.sort_unstable();
            code.sort_unstable();
            assert_eq!(documented, code, "{}", e.name());
            assert_eq!(schema["additionalProperties"], false);
            for f in fields(e)
                .iter()
                .filter(|f| f.required && f.alias_of.is_none())
            {
                // Required outright, or (a field with an alias) through a `oneOf` of its names.
                let in_one_of = schema["allOf"].as_array().is_some_and(|all| {
                    all.iter().any(|s| {
                        s["oneOf"]
                            .as_array()
                            .is_some_and(|b| b.iter().any(|b| b["required"] == json!([f.name])))
                    })
                });
                assert!(
                    in_one_of
                        || schema["required"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| r == f.name),
                    "{} {}",
                    e.name(),
                    f.name
                );
            }
        }
    }

    #[test]
    fn error_codes_are_all_documented() {
        use crate::error::ApiError;
        let d = doc();
        let codes = d["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"]
            .as_array()
            .unwrap()
            .clone();
        for e in [
            ApiError::MalformedJson(String::new()),
            ApiError::Unauthorized(String::new()),
            ApiError::NotFound,
            ApiError::MethodNotAllowed {
                method: String::new(),
                allowed: String::new(),
            },
            ApiError::TaskConflict(String::new()),
            ApiError::AnonymousNotAllowed,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType,
            ApiError::Validation(vec![]),
            ApiError::InputAssetNotFound(vec![]),
            ApiError::RateLimited(crate::limits::Refused {
                limit: crate::limits::LimitKind::ActiveSteps,
                max: Some(1),
                retry_after_s: 1,
            }),
            ApiError::Misconfigured(vec![]),
            ApiError::DependencyFailed {
                dependency: String::new(),
                message: String::new(),
            },
            ApiError::DependencyUnavailable {
                dependency: String::new(),
                message: String::new(),
            },
            ApiError::Internal,
            ApiError::UpgradeRequired,
        ] {
            assert!(
                codes.iter().any(|c| c == e.code()),
                "{} undocumented",
                e.code()
            );
        }
        assert_eq!(codes.len(), 16);
    }

    /// Every key the code answers with is documented, and every documented key is answered.
    #[test]
    fn response_schemas_match_what_the_code_serializes() {
        use crate::ids::{TaskId, UserId};
        use crate::request::{parse, Endpoint};
        use crate::status::{submit_response, view, StatusQuery};
        use crate::step::{Status, Step};
        use crate::task::{apply, Command, Submission};
        let v = parse(
            Endpoint::TextToModel,
            br#"{"task_id":"t-1","prompt":"a cat"}"#,
        )
        .unwrap();
        let owner = UserId(uuid::Uuid::from_u128(7));
        let sub = Submission {
            owner,
            task_id: v.task_id.clone(),
            request: v.request,
            deadline_ms: crate::task::DEFAULT_STEP_DEADLINE_MS,
        };
        let (state, _) = apply(None, Command::Submit(sub), 1_000).unwrap();
        // Waiting for a provider slot: every optional field is present.
        let wait = Command::AwaitSlot {
            step: Step::Model,
            attempt: 1,
            position: 3,
        };
        let (state, _) = apply(Some(state), wait, 1_001).unwrap();
        let status =
            serde_json::to_value(view(&state, StatusQuery::Latest, owner).unwrap()).unwrap();
        let submit = serde_json::to_value(submit_response(
            &TaskId::parse("t-1").unwrap(),
            Step::Model,
            Status::Pending,
        ))
        .unwrap();
        let d = doc();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let schema = |name: &str| keys(&d["components"]["schemas"][name]["properties"]);
        assert_eq!(keys(&status), schema("StatusResponse"));
        assert_eq!(keys(&status["steps"][0]), schema("StepStatus"));
        assert_eq!(keys(&submit), schema("SubmitResponse"));
    }

    #[test]
    fn the_429_is_documented_with_its_header_and_details() {
        use crate::error::ApiError;
        use crate::limits::{LimitKind, Refused};
        let d = doc();
        let e429 = &d["components"]["responses"]["E429"];
        assert_eq!(e429["headers"]["Retry-After"]["required"], true);
        let kinds = d["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["details"]["items"]["anyOf"][1]["properties"]["limit"]["enum"]
            .clone();
        for k in [
            LimitKind::SubmitsPerMinute,
            LimitKind::ActiveSteps,
            LimitKind::SubmitRequestsPerMinute,
        ] {
            assert!(kinds.as_array().unwrap().iter().any(|v| v == k.as_str()));
            let body: Value = serde_json::from_str(
                &ApiError::RateLimited(Refused {
                    limit: k,
                    max: Some(2),
                    retry_after_s: 1,
                })
                .body(),
            )
            .unwrap();
            let detail = body["error"]["details"][0].as_object().unwrap();
            for key in detail.keys() {
                assert!(
                    d["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
                        ["details"]["items"]["anyOf"][1]["properties"]
                        .get(key)
                        .is_some(),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn is_openapi_3_1() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        assert!(d["components"]["securitySchemes"]["bearerAuth"].is_object());
    }

    #[test]
    fn the_base_document_survives_its_text() {
        // The worker serves the base from its JSON text (written by its build script) and fits
        // it to the deployment: parsing the text back gives the same document.
        let base = document_for(None, None);
        let back: Value = serde_json::from_str(&base.to_string()).unwrap();
        assert_eq!(back, base);
        let o = Origin::parse("https://abc.supabase.co").unwrap();
        let hosts = vec!["hooks.example.com".to_owned()];
        let mut fitted = back;
        deploy(&mut fitted, Some(&o), Some(&hosts));
        assert_eq!(fitted, document_for(Some(&o), Some(&hosts)));
        assert_ne!(fitted, base);
    }
}
