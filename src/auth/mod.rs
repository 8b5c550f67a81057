//! Authentication of callers (SPEC §5): the bearer token is parsed and its claims checked by
//! `core::jwt`; the signature is checked with WebCrypto, against `SUPABASE_JWT_SECRET` (HS256) or
//! the project's JWKS (ES256/RS256; cached per isolate, refetched on an unknown `kid`).

pub mod webcrypto;

use std::cell::RefCell;

use worker::{Headers, Method};

use crate::core::config::{AuthMode, Config, LOCAL_USER_ID};
use crate::core::error::ApiError;
use crate::core::ids::UserId;
use crate::core::jwt::{
    self, AccessToken, AuthError, Caller, JwksCache, JwksCachePolicy, PublicKey, Validation,
    Verifier,
};
use crate::log::{self, Level};
use crate::net::{self, Body};
use webcrypto::Key;

thread_local! {
    /// One JWKS cache per isolate (Workers isolates are single-threaded).
    static JWKS: RefCell<JwksCache> = RefCell::new(JwksCache::default());
}

const JWKS_TIMEOUT_MS: u64 = 5_000;

use crate::net::now_ms;

#[allow(clippy::needless_pass_by_value)] // the shape of `map_err`
fn to_api(e: AuthError) -> ApiError {
    match e {
        AuthError::KeysUnavailable => ApiError::DependencyUnavailable {
            dependency: "auth".into(),
            message: e.to_string(),
        },
        AuthError::Anonymous => ApiError::AnonymousNotAllowed,
        _ => ApiError::Unauthorized(e.to_string()),
    }
}

/// The caller from the request's `Authorization` header: their user id and, under
/// `AUTH_MODE=supabase`, their token (for reads made with their rights, SPEC §4.1).
pub async fn authenticate(headers: &Headers, cfg: &Config) -> Result<Caller, ApiError> {
    if cfg.auth_mode == AuthMode::None {
        let id = uuid::Uuid::parse_str(LOCAL_USER_ID).map_err(|_| ApiError::Internal)?;
        return Ok(Caller {
            user: UserId(id),
            token: None,
            is_anonymous: false,
        });
    }
    let header = headers.get("authorization").ok().flatten();
    let token = jwt::bearer(header.as_deref()).map_err(to_api)?;
    let parsed = jwt::parse(token).map_err(to_api)?;
    let validation = Validation {
        leeway_s: i64::try_from(cfg.jwt_leeway_s).unwrap_or(30),
        ..Validation::new(
            i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX),
            Some(jwt::expected_issuer(&cfg.supabase_url)),
        )
    };
    // Claims first: an expired or foreign token is refused without any crypto or fetch.
    let user = jwt::validate_claims(&parsed.claims, &validation).map_err(to_api)?;
    let secret = cfg.supabase_jwt_secret.as_deref();
    let ok = match parsed.header.alg {
        jwt::Alg::Hs256 => {
            let Verifier::HmacSecret = parsed.verifier(secret.is_some(), None).map_err(to_api)?
            else {
                return Err(ApiError::Unauthorized(
                    AuthError::UnsupportedAlgorithm.to_string(),
                ));
            };
            let key = Key::Hmac(secret.unwrap_or_default().as_bytes());
            webcrypto::verify(key, parsed.signing_input(), parsed.signature()).await
        }
        jwt::Alg::Es256 | jwt::Alg::Rs256 => {
            let kid = parsed.header.kid.clone().unwrap_or_default();
            let jwks = keys(cfg, &kid).await?;
            let verifier = parsed.verifier(false, jwks.as_ref()).map_err(to_api)?;
            let Verifier::Jwk(jwk) = verifier else {
                return Err(ApiError::Unauthorized(
                    AuthError::UnsupportedAlgorithm.to_string(),
                ));
            };
            let key = match &jwk.key {
                PublicKey::EcP256 { x, y } => Key::EcP256 { x, y },
                PublicKey::Rsa { n, e, .. } => Key::Rsa { n, e },
            };
            webcrypto::verify(key, parsed.signing_input(), parsed.signature()).await
        }
    };
    match ok {
        Ok(true) => {
            jwt::admit_anonymous(&parsed.claims, cfg.anonymous_users).map_err(to_api)?;
            Ok(Caller {
                user,
                token: Some(AccessToken::new(token)),
                is_anonymous: parsed.claims.is_anonymous == Some(true),
            })
        }
        Ok(false) => Err(ApiError::Unauthorized(AuthError::BadSignature.to_string())),
        Err(e) => {
            log::emit(
                Level::Warn,
                "auth.key_unusable",
                None,
                None,
                serde_json::json!({ "error": e }),
            );
            Err(ApiError::Unauthorized(AuthError::BadSignature.to_string()))
        }
    }
}

/// The JWKS to verify a token with `kid`: the cached set, fetched when missing, stale, or when
/// `kid` is unknown (at most once per 30 s).
async fn keys(cfg: &Config, kid: &str) -> Result<Option<jwt::Jwks>, ApiError> {
    let policy = JwksCachePolicy {
        min_refetch_interval_ms: cfg.jwks_refetch_s * 1000,
        ..JwksCachePolicy::default()
    };
    let now = now_ms();
    let fetch = JWKS.with(|c| {
        let mut c = c.borrow_mut();
        let unknown = c.jwks.as_ref().is_none_or(|k| k.find(kid).is_none());
        let go = c.should_fetch(&policy, now, unknown);
        if go {
            c.record_attempt(now);
        }
        go
    });
    if fetch {
        let url = format!("{}/auth/v1/.well-known/jwks.json", cfg.supabase_url);
        // The publishable key when configured: the JWKS is public, the service key need not travel.
        let apikey = cfg
            .supabase_anon_key
            .clone()
            .unwrap_or_else(|| cfg.supabase_service_key.clone());
        match net::send(
            Method::Get,
            &url,
            &[("apikey", apikey.as_str())],
            Body::Empty,
            JWKS_TIMEOUT_MS,
        )
        .await
        {
            Ok(reply) if reply.is_success() => match jwt::parse_jwks(&reply.text()) {
                Ok(set) => JWKS.with(|c| c.borrow_mut().store(set, now)),
                Err(e) => log::emit(
                    Level::Warn,
                    "auth.jwks_invalid",
                    None,
                    None,
                    serde_json::json!({ "error": e.to_string() }),
                ),
            },
            Ok(reply) => log::emit(
                Level::Warn,
                "auth.jwks_http_error",
                None,
                None,
                serde_json::json!({ "status": reply.status }),
            ),
            Err(e) => log::emit(
                Level::Warn,
                "auth.jwks_unreachable",
                None,
                None,
                serde_json::json!({ "error": e.to_string() }),
            ),
        }
    }
    let set = JWKS.with(|c| c.borrow().usable(&policy, now).cloned());
    if set.is_none() {
        return Err(to_api(AuthError::KeysUnavailable));
    }
    Ok(set)
}
