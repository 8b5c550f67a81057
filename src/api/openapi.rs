//! `GET /openapi.json`: the OpenAPI document of `core::openapi`, for this deployment (with a usable
//! configuration, the input URL fields carry the Supabase origin rule as a pattern and
//! `webhook_url` the allowed hosts).

use worker::Env;

use crate::core::error::ApiError;
use crate::core::openapi;
use crate::reply::Reply;
use crate::settings;

pub fn handle(env: &Env) -> Result<Reply, ApiError> {
    let cfg = settings::loaded(env).as_ref().ok();
    let origin = cfg.map(|c| &c.supabase_origin);
    let hosts = cfg.map(|c| c.webhook_allowed_hosts.as_slice());
    Reply::json(200, &openapi::document_for(origin, hosts))
}
