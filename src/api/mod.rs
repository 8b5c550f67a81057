//! Request handlers: one module per group of endpoints. Each validates with `core`, acts through
//! `supabase`/`providers`/the Durable Objects (`task_client`, `user_limits`, `stub`), and answers
//! a typed `Reply` or an `ApiError`; `http` makes the response. Handlers never import `http`.

pub mod generate;
pub mod health;
pub mod live;
pub mod openapi;
pub mod playground;
pub mod status;
pub mod test_hooks;
pub mod tripo_webhook;

use worker::{Headers, Request};

use crate::auth;
use crate::core::config::Config;
use crate::core::error::ApiError;
use crate::core::ids::{TaskId, UserId};
use crate::core::jwt::Caller;
use crate::core::status::{parse_query, StatusQuery};
use crate::core::storage_path::percent_decode;
use crate::reply::internal;
use crate::settings;

/// Where a `/tasks/{task_id}/…` request may carry its token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `Authorization: Bearer …` only.
    Header,
    /// Also `?access_token=` (browsers' `EventSource` and `WebSocket` cannot set headers).
    HeaderOrQuery,
}

/// The opening every `/tasks/{task_id}/…` handler shares: the configuration, the caller, the task
/// id (an invalid one is a plain 404, like another user's task) and the `step`/`service` query.
pub struct TaskRequest {
    pub cfg: &'static Config,
    pub user: UserId,
    pub task_id: TaskId,
    pub query: StatusQuery,
    /// The raw query string (for the handler's other parameters).
    pub raw_query: String,
}

impl TaskRequest {
    pub async fn open(
        raw_id: &str,
        req: &Request,
        env: &worker::Env,
        token: Token,
    ) -> Result<TaskRequest, ApiError> {
        let cfg = settings::config(env)?;
        let raw_query = query_string(req);
        let user = caller(req, cfg, &raw_query, token).await?.user;
        let task_id = TaskId::parse(raw_id).map_err(|_| ApiError::NotFound)?;
        let query = parse_query(&raw_query).map_err(|e| ApiError::Validation(vec![e]))?;
        Ok(TaskRequest {
            cfg,
            user,
            task_id,
            query,
            raw_query,
        })
    }
}

/// The request's query string, without the `?` (empty when there is none), cut from the URL as
/// the runtime serialized it. Not `Request::url()`: parsing with the `url` crate would bring it and
/// its IDNA tables into the bundle (about 80 KiB of its gzipped size) to get the same text back.
pub fn query_string(req: &Request) -> String {
    let url = req.inner().url();
    let Some((_, query)) = url.split_once('?') else {
        return String::new();
    };
    query.split_once('#').map_or(query, |(q, _)| q).to_owned()
}

/// The value of query parameter `name`, decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")).unwrap_or_default())
    })
}

/// The caller, with the token from `Authorization` or else (where allowed) `?access_token=`.
async fn caller(
    req: &Request,
    cfg: &Config,
    query: &str,
    token: Token,
) -> Result<Caller, ApiError> {
    let has_header = req.headers().get("authorization").ok().flatten().is_some();
    let from_query = match token {
        Token::Header => None,
        Token::HeaderOrQuery => {
            query_param(query, "access_token").filter(|t| !t.is_empty() && !has_header)
        }
    };
    match from_query {
        Some(token) => {
            let h = Headers::new();
            h.set("authorization", &format!("Bearer {token}"))
                .map_err(internal)?;
            auth::authenticate(&h, cfg).await
        }
        None => auth::authenticate(req.headers(), cfg).await,
    }
}
