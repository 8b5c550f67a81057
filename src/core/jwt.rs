//! Pure JWT handling for SPEC §5 (Supabase user access tokens), without any crypto.
//!
//! This module owns everything about a token except the signature arithmetic, which the glue
//! does with WebCrypto:
//! - [`bearer`] and [`parse`]: the `Authorization` header, the compact JWS (three base64url
//!   parts, strict decoding), the header (`alg` ∈ HS256 / ES256 / RS256; `none`, anything else
//!   and any `crit` are refused) and the claims. [`Token::signing_input`] and
//!   [`Token::signature`] are the bytes to verify.
//! - [`Token::verifier`]: which key verifies the token. **No algorithm confusion:** an HS256
//!   token is only ever checked with `SUPABASE_JWT_SECRET` (HMAC), never with a JWKS key; an
//!   ES256 token only with an EC P-256 JWK, an RS256 token only with an RSA JWK, each selected by
//!   `kid` and refused if the JWK declares another `alg` or a non-signature `use`. Symmetric
//!   (`oct`) JWKs are dropped when the JWKS is parsed. Signature lengths are checked here (ES256:
//!   raw `r‖s`, 64 bytes, the form WebCrypto's ECDSA verify expects; RS256: the modulus length;
//!   HS256: 32 bytes).
//! - The WebCrypto parameters for each algorithm ([`Alg::import_params`],
//!   [`Alg::verify_params`], [`Jwk::to_webcrypto_jwk`]). The HS256 key is the secret's UTF-8
//!   bytes, imported as `raw` (Supabase and PostgREST use the secret as-is, not base64-decoded).
//! - [`validate_claims`]: `exp` (with leeway, default 30 s, like PostgREST), `nbf`,
//!   `aud` = `authenticated` (string or array), `role` = `authenticated`, `iss` when configured
//!   (`{SUPABASE_URL}/auth/v1`, see [`expected_issuer`]), `sub` a UUID → [`UserId`].
//! - [`parse_jwks`] and [`JwksCache`] with its [`JwksCachePolicy`]: TTL 10 min (Supabase serves
//!   the JWKS with a 10-minute cache-control), refetch on an unknown `kid` at most once per 30 s,
//!   and a stale set kept usable for up to 1 h when a refresh fails.
//!
//! Both key sources may be enabled at once (decision): HS256 tokens are accepted when
//! `SUPABASE_JWT_SECRET` is set, ES256/RS256 tokens when a JWKS is available. A project that is
//! migrating from the legacy secret to signing keys issues both kinds for a while.
//!
//! Order in the glue: `bearer` → `parse` → `verifier` (refetch the JWKS once on
//! [`AuthError::UnknownKey`] if [`JwksCache::should_fetch`] allows) → WebCrypto verify (false →
//! [`AuthError::BadSignature`]) → `validate_claims`. Every [`AuthError`] message is safe to
//! return to the client: none repeats the token or a claim value.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ids::UserId;

/// Longest token accepted (bytes); Supabase access tokens are about 1 KB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default clock leeway for `exp` / `nbf` (PostgREST's value).
pub const DEFAULT_LEEWAY_S: i64 = 30;
/// The audience and role of a Supabase user access token.
pub const AUTHENTICATED: &str = "authenticated";
/// Smallest RSA modulus accepted (bits).
pub const MIN_RSA_BITS: usize = 2048;

/// Why a token was refused. Messages are safe for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    /// The static string says what is wrong, for logs; it never contains token data.
    #[error("malformed bearer token ({0})")]
    Malformed(&'static str),
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("token signing key is not known")]
    UnknownKey,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token is not a user access token")]
    WrongRole,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token subject is not a user id")]
    BadSubject,
    #[error("anonymous sign-ins may not use this service; sign in with an account")]
    Anonymous,
    #[error("token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// The JWKS could not be fetched and no usable copy is cached.
    #[error("token signing keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// 503 when we could not check the token (keys unavailable), 403 for a valid anonymous
    /// sign-in that is not admitted, else 401.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::KeysUnavailable => 503,
            AuthError::Anonymous => 403,
            _ => 401,
        }
    }
}

/// The accepted signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs256,
    Es256,
    Rs256,
}

impl Alg {
    /// Exact, case-sensitive (RFC 7518 names). `none` and everything else → `None`.
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "HS256" => Some(Alg::Hs256),
            "ES256" => Some(Alg::Es256),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }

    /// The `algorithm` argument of `crypto.subtle.importKey` (format `raw` for HS256, `jwk`
    /// otherwise).
    pub fn import_params(self) -> Value {
        match self {
            Alg::Hs256 => json!({"name": "HMAC", "hash": "SHA-256"}),
            Alg::Es256 => json!({"name": "ECDSA", "namedCurve": "P-256"}),
            Alg::Rs256 => json!({"name": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"}),
        }
    }

    /// The `algorithm` argument of `crypto.subtle.verify`.
    pub fn verify_params(self) -> Value {
        match self {
            Alg::Hs256 => json!({"name": "HMAC"}),
            Alg::Es256 => json!({"name": "ECDSA", "hash": "SHA-256"}),
            Alg::Rs256 => json!({"name": "RSASSA-PKCS1-v1_5"}),
        }
    }
}

/// The JOSE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// `aud`: one string or an array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// The claims we read. NumericDates may be fractional; they are floored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub exp: Option<f64>,
    #[serde(default)]
    pub nbf: Option<f64>,
    #[serde(default)]
    pub iat: Option<f64>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub is_anonymous: Option<bool>,
    #[serde(default)]
    pub session_id: Option<String>,
}

/// A parsed, not yet verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Token<'a> {
    pub header: Header,
    pub claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl Token<'_> {
    /// `base64url(header) + "." + base64url(payload)`, the bytes that were signed.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The decoded signature (ES256: raw `r‖s`).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map_or("", str::trim);
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("expected `Bearer <token>`"));
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.contains(char::is_whitespace) {
        return Err(AuthError::Malformed("expected `Bearer <token>`"));
    }
    Ok(token)
}

fn b64url(part: &str, what: &'static str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed(what))
}

/// Splits and decodes a compact JWS. Refuses `alg: none`, unknown algorithms and `crit`.
pub fn parse(token: &str) -> Result<Token<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not a compact JWS"));
    };
    let header_json: Value = serde_json::from_slice(&b64url(h, "header is not base64url")?)
        .map_err(|_| AuthError::Malformed("header is not JSON"))?;
    let header_obj = header_json
        .as_object()
        .ok_or(AuthError::Malformed("header is not an object"))?;
    let alg = header_obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed("header has no alg"))?;
    let alg = Alg::parse(alg).ok_or(AuthError::UnsupportedAlgorithm)?;
    if header_obj.contains_key("crit") {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    let text = |k: &str| header_obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let header = Header {
        alg,
        kid: text("kid"),
        typ: text("typ"),
    };
    let claims: Claims = serde_json::from_slice(&b64url(p, "payload is not base64url")?)
        .map_err(|_| AuthError::Malformed("payload is not a JSON claims object"))?;
    let signature = b64url(s, "signature is not base64url")?;
    if signature.is_empty() {
        return Err(AuthError::Malformed("empty signature"));
    }
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Token {
        header,
        claims,
        signing_input,
        signature,
    })
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A public key from the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// EC P-256: base64url coordinates (32 bytes each).
    EcP256 { x: String, y: String },
    /// RSA: base64url modulus and exponent; `modulus_len` in bytes.
    Rsa {
        n: String,
        e: String,
        modulus_len: usize,
    },
}

/// One usable JWKS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: String,
    /// The `alg` the JWK declares, if any (it must then match the token's).
    pub alg: Option<String>,
    pub key: PublicKey,
}

impl Jwk {
    /// The algorithm this key can verify.
    pub fn alg(&self) -> Alg {
        match self.key {
            PublicKey::EcP256 { .. } => Alg::Es256,
            PublicKey::Rsa { .. } => Alg::Rs256,
        }
    }

    /// The JWK to pass to `crypto.subtle.importKey("jwk", …, alg.import_params(), false,
    /// ["verify"])`: public members only.
    pub fn to_webcrypto_jwk(&self) -> Value {
        match &self.key {
            PublicKey::EcP256 { x, y } => json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "alg": "ES256", "ext": true, "key_ops": ["verify"],
            }),
            PublicKey::Rsa { n, e, .. } => json!({
                "kty": "RSA", "n": n, "e": e,
                "alg": "RS256", "ext": true, "key_ops": ["verify"],
            }),
        }
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// Why a JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not JSON with a `keys` array")]
    Shape,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
}

fn decoded_len(s: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(s).ok().map(|b| b.len())
}

impl RawJwk {
    /// The usable key, or `None` (no kid, symmetric, encryption key, malformed, weak RSA).
    fn usable(self) -> Option<Jwk> {
        let kid = self.kid.filter(|k| !k.is_empty())?;
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = &self.key_ops {
            if !ops.iter().any(|o| o == "verify") {
                return None;
            }
        }
        let key = match (self.kty.as_deref(), self.crv.as_deref()) {
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (self.x?, self.y?);
                if decoded_len(&x)? != 32 || decoded_len(&y)? != 32 {
                    return None;
                }
                PublicKey::EcP256 { x, y }
            }
            (Some("RSA"), _) => {
                let (n, e) = (self.n?, self.e?);
                let modulus = URL_SAFE_NO_PAD.decode(&n).ok()?;
                let significant = modulus.iter().skip_while(|b| **b == 0).count();
                if significant * 8 < MIN_RSA_BITS || decoded_len(&e)? == 0 {
                    return None;
                }
                PublicKey::Rsa {
                    n,
                    e,
                    modulus_len: significant,
                }
            }
            _ => return None,
        };
        let jwk = Jwk {
            kid,
            alg: self.alg,
            key,
        };
        // A declared alg must be the one this key type verifies.
        match jwk.alg.as_deref() {
            Some(a) if Alg::parse(a) != Some(jwk.alg()) => None,
            _ => Some(jwk),
        }
    }
}

/// Parses a JWKS document, keeping the usable signature keys (others are skipped).
pub fn parse_jwks(body: &str) -> Result<Jwks, JwksError> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<Value>,
    }
    let doc: Doc = serde_json::from_str(body).map_err(|_| JwksError::Shape)?;
    let keys = doc
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
        .filter_map(RawJwk::usable)
        .collect();
    Ok(Jwks { keys })
}

/// How the glue must verify the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier<'k> {
    /// HMAC SHA-256 with `SUPABASE_JWT_SECRET`'s UTF-8 bytes.
    HmacSecret,
    /// ECDSA P-256 SHA-256 or RSASSA-PKCS1-v1_5 SHA-256 with this JWK (see [`Jwk::alg`]).
    Jwk(&'k Jwk),
}

impl Token<'_> {
    /// Selects the key for this token. `hs256_secret_set`: `SUPABASE_JWT_SECRET` is configured;
    /// `jwks`: the usable cached keys, if any.
    pub fn verifier<'k>(
        &self,
        hs256_secret_set: bool,
        jwks: Option<&'k Jwks>,
    ) -> Result<Verifier<'k>, AuthError> {
        match self.header.alg {
            Alg::Hs256 => {
                if !hs256_secret_set {
                    return Err(AuthError::UnsupportedAlgorithm);
                }
                if self.signature.len() != 32 {
                    return Err(AuthError::BadSignature);
                }
                Ok(Verifier::HmacSecret)
            }
            alg @ (Alg::Es256 | Alg::Rs256) => {
                let jwks = jwks.ok_or(AuthError::KeysUnavailable)?;
                let kid = self.header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
                let jwk = jwks.find(kid).ok_or(AuthError::UnknownKey)?;
                if jwk.alg() != alg {
                    return Err(AuthError::UnsupportedAlgorithm);
                }
                let expected_len = match &jwk.key {
                    PublicKey::EcP256 { .. } => 64,
                    PublicKey::Rsa { modulus_len, .. } => *modulus_len,
                };
                if self.signature.len() != expected_len {
                    return Err(AuthError::BadSignature);
                }
                Ok(Verifier::Jwk(jwk))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

/// `{SUPABASE_URL}/auth/v1` (trailing slash of the URL ignored).
pub fn expected_issuer(supabase_url: &str) -> String {
    format!("{}/auth/v1", supabase_url.trim().trim_end_matches('/'))
}

/// What [`validate_claims`] checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Current time, unix seconds.
    pub now_s: i64,
    /// Clock leeway for `exp` and `nbf`, seconds.
    pub leeway_s: i64,
    /// Required `iss`, when known.
    pub issuer: Option<String>,
}

impl Validation {
    /// Leeway [`DEFAULT_LEEWAY_S`].
    pub fn new(now_s: i64, issuer: Option<String>) -> Validation {
        Validation {
            now_s,
            leeway_s: DEFAULT_LEEWAY_S,
            issuer,
        }
    }
}

/// Admits a Supabase anonymous sign-in (`is_anonymous: true`) only when `allow` is set
/// (`ANONYMOUS_USERS=allow`). Called after the signature is verified, so a forged token is a
/// 401 whatever its claims say.
pub fn admit_anonymous(claims: &Claims, allow: bool) -> Result<(), AuthError> {
    if claims.is_anonymous == Some(true) && !allow {
        return Err(AuthError::Anonymous);
    }
    Ok(())
}

/// The caller's own access token, kept only to make reads with their rights (SPEC §4.1) during
/// the request that carried it. Never logged, stored or shown: `Debug` prints no value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: &str) -> AccessToken {
        AccessToken(token.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…)")
    }
}

/// An authenticated caller: the user, and their token (`None` under `AUTH_MODE=none`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub token: Option<AccessToken>,
    /// A Supabase anonymous sign-in (`is_anonymous: true`): the anonymous limits apply.
    pub is_anonymous: bool,
}

/// Checks the claims of a token whose signature has been verified; returns the user.
#[allow(clippy::cast_possible_truncation)] // finite seconds, floored; `as` saturates
pub fn validate_claims(claims: &Claims, v: &Validation) -> Result<UserId, AuthError> {
    let exp = claims.exp.ok_or(AuthError::MissingClaim("exp"))?;
    if !exp.is_finite() || (exp.floor() as i64).saturating_add(v.leeway_s) < v.now_s {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if !nbf.is_finite() || (nbf.floor() as i64).saturating_sub(v.leeway_s) > v.now_s {
            return Err(AuthError::NotYetValid);
        }
    }
    match &claims.aud {
        Some(aud) if aud.contains(AUTHENTICATED) => {}
        Some(_) => return Err(AuthError::WrongAudience),
        None => return Err(AuthError::MissingClaim("aud")),
    }
    if claims.role.as_deref() != Some(AUTHENTICATED) {
        return Err(AuthError::WrongRole);
    }
    if let Some(expected) = &v.issuer {
        if claims.iss.as_deref() != Some(expected.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
    }
    let sub = claims
        .sub
        .as_deref()
        .ok_or(AuthError::MissingClaim("sub"))?;
    let uuid = Uuid::try_parse(sub).map_err(|_| AuthError::BadSubject)?;
    if uuid.is_nil() {
        return Err(AuthError::BadSubject);
    }
    Ok(UserId(uuid))
}

// ---------------------------------------------------------------------------------------------
// JWKS cache policy
// ---------------------------------------------------------------------------------------------

/// Timings of the JWKS cache. `Default` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksCachePolicy {
    /// A fetched set is fresh this long. Default 10 min.
    pub ttl_ms: u64,
    /// At most one fetch per this interval, whatever the reason. Default 30 s.
    pub min_refetch_interval_ms: u64,
    /// After the TTL, a set stays usable this much longer if refreshing fails. Default 1 h.
    pub max_stale_ms: u64,
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        JwksCachePolicy {
            ttl_ms: 10 * 60 * 1000,
            min_refetch_interval_ms: 30 * 1000,
            max_stale_ms: 60 * 60 * 1000,
        }
    }
}

/// The cached JWKS (the glue keeps one per isolate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksCache {
    pub jwks: Option<Jwks>,
    /// When `jwks` was fetched.
    pub fetched_at_ms: Option<u64>,
    /// When a fetch was last tried, successful or not.
    pub last_attempt_ms: Option<u64>,
}

impl JwksCache {
    /// Whether to fetch now: the set is missing or past its TTL, or the token's `kid` is
    /// unknown; in every case not more than once per `min_refetch_interval_ms`.
    pub fn should_fetch(&self, policy: &JwksCachePolicy, now_ms: u64, unknown_kid: bool) -> bool {
        let rate_ok = self
            .last_attempt_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= policy.min_refetch_interval_ms);
        let expired = match (&self.jwks, self.fetched_at_ms) {
            (Some(_), Some(t)) => now_ms.saturating_sub(t) >= policy.ttl_ms,
            _ => true,
        };
        rate_ok && (expired || unknown_kid)
    }

    /// Records a fetch attempt (call before fetching).
    pub fn record_attempt(&mut self, now_ms: u64) {
        self.last_attempt_ms = Some(now_ms);
    }

    /// Stores a fetched set.
    pub fn store(&mut self, jwks: Jwks, now_ms: u64) {
        self.jwks = Some(jwks);
        self.fetched_at_ms = Some(now_ms);
        self.last_attempt_ms = Some(now_ms);
    }

    /// The keys to verify with: the cached set while fresh or within the stale allowance.
    pub fn usable(&self, policy: &JwksCachePolicy, now_ms: u64) -> Option<&Jwks> {
        let t = self.fetched_at_ms?;
        let limit = policy.ttl_ms.saturating_add(policy.max_stale_ms);
        (now_ms.saturating_sub(t) < limit)
            .then_some(self.jwks.as_ref())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_899_999_000;
    const SUB: &str = "8f1e6f2a-0c1d-4b7e-9a51-3f0c2b9d7e11";
    const ISS: &str = "https://abc.supabase.co/auth/v1";

    /// Minted with Python `cryptography` (ES256, raw r‖s) against `JWKS` below; verified there.
    const ES_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzLWtpZC0xIiwidHlwIjoiSldUIn0.eyJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjoxOTAwMDAwMDAwLCJpYXQiOjE4OTk5OTY0MDAsImlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjFlNmYyYS0wYzFkLTRiN2UtOWE1MS0zZjBjMmI5ZDdlMTEiLCJlbWFpbCI6InVAZXhhbXBsZS5jb20iLCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImFhbCI6ImFhbDEiLCJzZXNzaW9uX2lkIjoiMGI5YzFjNjItNWQ4YS00YjhmLTlmMGUtMmE3ZDhjMWU2YjU1IiwiaXNfYW5vbnltb3VzIjpmYWxzZX0.sedQDMM92p2olW84bAzRi5myanYlvITmhFUpGS7aLifdKRfR_gTNquAA1I77BKXVIRKzi-5NEcc6ilp5EQ6DCA";
    /// RS256, 2048-bit key `rs-kid-1`.
    const RS_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzLWtpZC0xIiwidHlwIjoiSldUIn0.eyJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjoxOTAwMDAwMDAwLCJpYXQiOjE4OTk5OTY0MDAsImlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjFlNmYyYS0wYzFkLTRiN2UtOWE1MS0zZjBjMmI5ZDdlMTEiLCJlbWFpbCI6InVAZXhhbXBsZS5jb20iLCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImFhbCI6ImFhbDEiLCJzZXNzaW9uX2lkIjoiMGI5YzFjNjItNWQ4YS00YjhmLTlmMGUtMmE3ZDhjMWU2YjU1IiwiaXNfYW5vbnltb3VzIjpmYWxzZX0.gHaWcC-SlYqEOxR6hnp_OCf17dkZtTZAiCm7NfTFuozNUqLgOS_JdboVp-bWuxlx92QCBbhTOtJYDfDv-nceV8vIYFdONMBObBm1cm6oKAUGPUNW0obrVFonuXu2yvfBOuVRYky-QYnpMnaU56hdc4tAczUA43v8bEWfBe1B6WuDv2V9CHm_EOaoxgCUb2XeDoCA7_JjmJbFR5RiXCBTWkJwopY485ckUVeSjjOcrINQ2JBWILenvVPftOHIDIJvIbk5CWGhEIAjyBWZxs7vM_eSGj6lid-Rc7mLrjMrx3Dx2F28RW-Z_3stdJ4DPk0WaSpl2gV1AlfPceqb0XaNxw";
    /// HS256 with the secret `super-secret-jwt-token-with-at-least-32-characters-long`.
    const HS_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjoxOTAwMDAwMDAwLCJpYXQiOjE4OTk5OTY0MDAsImlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjFlNmYyYS0wYzFkLTRiN2UtOWE1MS0zZjBjMmI5ZDdlMTEiLCJlbWFpbCI6InVAZXhhbXBsZS5jb20iLCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImFhbCI6ImFhbDEiLCJzZXNzaW9uX2lkIjoiMGI5YzFjNjItNWQ4YS00YjhmLTlmMGUtMmE3ZDhjMWU2YjU1IiwiaXNfYW5vbnltb3VzIjpmYWxzZX0.DXuj8ByTYkidt2WB4sJljlyQ4W1kWcpnBGE7i7XWFp4";
    const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw", "y": "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg", "kid": "es-kid-1", "alg": "ES256", "use": "sig", "key_ops": ["verify"], "ext": true}, {"kty": "RSA", "n": "yxhnw3tnv-JQWZEnT8CKTktiCwHyfyGsHtGT9qiwWaKSBkwO4kNNEGZxwxOqAPo4CxZ4f4GCbnuR1TTYNDwQ46VUmp4JxBpiBUQ2bdyHKcZBwDg3sMRaRy2EqEM-NCqNaJJatEjQ9b8FfeNIMQnK_MrBo_ogAzhOEubk_rFzjTPqSnbSClgkDainw1Ukd5SrFLpluD5TB6Ou9jd6fHjyBPd1QwAlzCtAVjGO-buLv9ZKnSy_qwiVUBikvV24eHUWWGkIJM-u_ybCQwYIS1NOdqGIhMkZb6UZjcUK112S3xvTJhA0QJx_y1vRu1pV5TO0PegcoZCU-f2S3xDZ8i_pMw", "e": "AQAB", "kid": "rs-kid-1", "alg": "RS256", "use": "sig"}]}"#;

    /// RFC 7515 appendix A.1 (HS256).
    const RFC_A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token with the given header and claims and a fake signature of `sig_len` bytes.
    fn forge(header: Value, claims: Value, sig_len: usize) -> String {
        format!(
            "{}.{}.{}",
            enc(&header),
            enc(&claims),
            URL_SAFE_NO_PAD.encode(vec![7u8; sig_len])
        )
    }

    fn good_claims() -> Value {
        json!({"aud":"authenticated","exp":NOW + 600,"iss":ISS,"sub":SUB,"role":"authenticated"})
    }

    fn validation() -> Validation {
        Validation::new(NOW, Some(ISS.to_owned()))
    }

    #[test]
    fn parses_the_rfc_7515_hs256_example() {
        let t = parse(RFC_A1).unwrap();
        assert_eq!(t.header.alg, Alg::Hs256);
        assert_eq!(t.header.typ.as_deref(), Some("JWT"));
        assert_eq!(t.claims.iss.as_deref(), Some("joe"));
        assert_eq!(t.claims.exp, Some(1_300_819_380.0));
        assert_eq!(
            t.signing_input(),
            RFC_A1.rsplit_once('.').unwrap().0.as_bytes()
        );
        // The signature octets listed in the RFC.
        assert_eq!(
            t.signature(),
            &[
                116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22,
                212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121
            ]
        );
        // It has no aud/role/sub: not a Supabase user token.
        assert_eq!(
            validate_claims(&t.claims, &Validation::new(1_300_819_000, None)),
            Err(AuthError::MissingClaim("aud"))
        );
    }

    #[test]
    fn supabase_tokens_select_their_key_and_validate() {
        let jwks = parse_jwks(JWKS).unwrap();
        assert_eq!(jwks.keys.len(), 2);

        let es = parse(ES_TOKEN).unwrap();
        assert_eq!(es.header.kid.as_deref(), Some("es-kid-1"));
        assert_eq!(es.signature().len(), 64);
        match es.verifier(false, Some(&jwks)).unwrap() {
            Verifier::Jwk(k) => {
                assert_eq!(k.alg(), Alg::Es256);
                assert_eq!(k.to_webcrypto_jwk()["crv"], "P-256");
                assert!(k.to_webcrypto_jwk().get("d").is_none());
            }
            other => panic!("{other:?}"),
        }
        let user = validate_claims(&es.claims, &validation()).unwrap();
        assert_eq!(user.to_string(), SUB);

        let rs = parse(RS_TOKEN).unwrap();
        assert_eq!(rs.signature().len(), 256);
        assert!(
            matches!(rs.verifier(false, Some(&jwks)), Ok(Verifier::Jwk(k)) if k.alg() == Alg::Rs256)
        );

        let hs = parse(HS_TOKEN).unwrap();
        assert_eq!(hs.verifier(true, Some(&jwks)), Ok(Verifier::HmacSecret));
        assert_eq!(validate_claims(&hs.claims, &validation()).unwrap(), user);
    }

    #[test]
    fn no_algorithm_confusion() {
        let jwks = parse_jwks(JWKS).unwrap();
        // HS256 without a configured secret: refused, even though a JWKS is available.
        let hs = parse(HS_TOKEN).unwrap();
        assert_eq!(
            hs.verifier(false, Some(&jwks)),
            Err(AuthError::UnsupportedAlgorithm)
        );
        // HS256 token naming a JWKS kid still goes to the secret, never to the JWK.
        let hs_kid = forge(json!({"alg":"HS256","kid":"rs-kid-1"}), good_claims(), 32);
        assert_eq!(
            parse(&hs_kid).unwrap().verifier(true, Some(&jwks)),
            Ok(Verifier::HmacSecret)
        );
        // ES256 header pointing at the RSA key, and RS256 at the EC key: refused.
        let es_on_rsa = forge(json!({"alg":"ES256","kid":"rs-kid-1"}), good_claims(), 64);
        assert_eq!(
            parse(&es_on_rsa).unwrap().verifier(true, Some(&jwks)),
            Err(AuthError::UnsupportedAlgorithm)
        );
        let rs_on_ec = forge(json!({"alg":"RS256","kid":"es-kid-1"}), good_claims(), 256);
        assert_eq!(
            parse(&rs_on_ec).unwrap().verifier(true, Some(&jwks)),
            Err(AuthError::UnsupportedAlgorithm)
        );
        // A symmetric key in the JWKS is dropped.
        let with_oct =
            parse_jwks(r#"{"keys":[{"kty":"oct","kid":"hs","k":"c2VjcmV0","alg":"HS256"}]}"#)
                .unwrap();
        assert!(with_oct.keys.is_empty());
    }

    #[test]
    fn refuses_none_unknown_and_crit() {
        for alg in ["none", "None", "HS512", "PS256", "EdDSA", "hs256"] {
            let t = forge(json!({"alg": alg}), good_claims(), 32);
            assert_eq!(parse(&t), Err(AuthError::UnsupportedAlgorithm), "{alg}");
        }
        let unsigned = format!("{}.{}.", enc(&json!({"alg":"none"})), enc(&good_claims()));
        assert_eq!(parse(&unsigned), Err(AuthError::UnsupportedAlgorithm));
        let crit = forge(
            json!({"alg":"ES256","kid":"es-kid-1","crit":["b64"]}),
            good_claims(),
            64,
        );
        assert_eq!(parse(&crit), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn refuses_malformed_tokens() {
        let bad = [
            "",
            "abc",
            "a.b",
            "a.b.c.d.e",
            "!!.e30.AA",
            &format!("{}.e30.", enc(&json!({"alg":"HS256"}))),
            &format!("{}.bm90IGpzb24.AAAA", enc(&json!({"alg":"HS256"}))),
            &format!(
                "{}.{}.AAAA=",
                enc(&json!({"alg":"HS256"})),
                enc(&good_claims())
            ),
            &format!("e30.{}.AAAA", enc(&good_claims())),
        ];
        for t in bad {
            assert!(matches!(parse(t), Err(AuthError::Malformed(_))), "{t:?}");
        }
        assert!(matches!(
            parse(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::Malformed(_))
        ));
        // Messages never contain token material.
        let msg = parse("eyJzZWNyZXQ.x.y").unwrap_err().to_string();
        assert!(!msg.contains("eyJ"), "{msg}");
    }

    #[test]
    fn signature_lengths_are_checked() {
        let jwks = parse_jwks(JWKS).unwrap();
        let short_es = forge(json!({"alg":"ES256","kid":"es-kid-1"}), good_claims(), 72);
        assert_eq!(
            parse(&short_es).unwrap().verifier(false, Some(&jwks)),
            Err(AuthError::BadSignature)
        );
        let short_rs = forge(json!({"alg":"RS256","kid":"rs-kid-1"}), good_claims(), 128);
        assert_eq!(
            parse(&short_rs).unwrap().verifier(false, Some(&jwks)),
            Err(AuthError::BadSignature)
        );
        let short_hs = forge(json!({"alg":"HS256"}), good_claims(), 16);
        assert_eq!(
            parse(&short_hs).unwrap().verifier(true, None),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn key_lookup_errors() {
        let jwks = parse_jwks(JWKS).unwrap();
        let unknown = forge(json!({"alg":"ES256","kid":"rotated"}), good_claims(), 64);
        assert_eq!(
            parse(&unknown).unwrap().verifier(false, Some(&jwks)),
            Err(AuthError::UnknownKey)
        );
        let no_kid = forge(json!({"alg":"ES256"}), good_claims(), 64);
        assert_eq!(
            parse(&no_kid).unwrap().verifier(false, Some(&jwks)),
            Err(AuthError::UnknownKey)
        );
        let es = parse(ES_TOKEN).unwrap();
        assert_eq!(es.verifier(true, None), Err(AuthError::KeysUnavailable));
        assert_eq!(AuthError::KeysUnavailable.http_status(), 503);
        assert_eq!(AuthError::Expired.http_status(), 401);
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer(Some("bearer   abc")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some("  ")), Err(AuthError::Missing));
        assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Missing));
        assert!(matches!(
            bearer(Some("Basic dXNlcg==")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bearer(Some("Bearer a b")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bearer(Some("abc.def.ghi")),
            Err(AuthError::Malformed(_))
        ));
    }

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn time_checks_use_the_leeway() {
        let v = validation();
        let mut c = good_claims();
        c["exp"] = json!(NOW - 30);
        assert!(validate_claims(&claims(c.clone()), &v).is_ok());
        c["exp"] = json!(NOW - 31);
        assert_eq!(
            validate_claims(&claims(c.clone()), &v),
            Err(AuthError::Expired)
        );
        c["exp"] = json!(NOW + 10);
        c["nbf"] = json!(NOW + 30);
        assert!(validate_claims(&claims(c.clone()), &v).is_ok());
        c["nbf"] = json!(NOW + 31);
        assert_eq!(
            validate_claims(&claims(c.clone()), &v),
            Err(AuthError::NotYetValid)
        );
        let mut no_exp = good_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            validate_claims(&claims(no_exp), &v),
            Err(AuthError::MissingClaim("exp"))
        );
        let mut fractional = good_claims();
        fractional["exp"] = json!((NOW - 30) as f64 + 0.9);
        assert!(validate_claims(&claims(fractional), &v).is_ok());
    }

    #[test]
    fn audience_role_issuer_subject() {
        let v = validation();
        let check = |patch: Value| {
            let mut c = good_claims();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = val.clone();
                }
            }
            validate_claims(&claims(c), &v)
        };
        assert!(check(json!({"aud":["x","authenticated"]})).is_ok());
        assert_eq!(check(json!({"aud":"anon"})), Err(AuthError::WrongAudience));
        assert_eq!(
            check(json!({"aud":["a","b"]})),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(check(json!({"role":"anon"})), Err(AuthError::WrongRole));
        assert_eq!(
            check(json!({"role":"service_role"})),
            Err(AuthError::WrongRole)
        );
        assert_eq!(check(json!({"role":null})), Err(AuthError::WrongRole));
        assert_eq!(
            check(json!({"iss":"https://evil.supabase.co/auth/v1"})),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(check(json!({"iss":null})), Err(AuthError::WrongIssuer));
        assert_eq!(
            check(json!({"sub":"not-a-uuid"})),
            Err(AuthError::BadSubject)
        );
        assert_eq!(
            check(json!({"sub":"00000000-0000-0000-0000-000000000000"})),
            Err(AuthError::BadSubject)
        );
        assert_eq!(
            check(json!({"sub":null})),
            Err(AuthError::MissingClaim("sub"))
        );
        // No issuer configured: not checked.
        let mut c = good_claims();
        c["iss"] = json!("anything");
        assert!(validate_claims(&claims(c), &Validation::new(NOW, None)).is_ok());
        // Anonymous sign-ins: valid claims, admitted only when allowed, refused with 403.
        let mut anon = good_claims();
        anon["is_anonymous"] = json!(true);
        assert!(validate_claims(&claims(anon.clone()), &v).is_ok());
        assert_eq!(
            admit_anonymous(&claims(anon.clone()), false),
            Err(AuthError::Anonymous)
        );
        assert_eq!(AuthError::Anonymous.http_status(), 403);
        assert!(admit_anonymous(&claims(anon), true).is_ok());
        let mut named = good_claims();
        named["is_anonymous"] = json!(false);
        assert!(admit_anonymous(&claims(named), false).is_ok());
        assert!(admit_anonymous(&claims(good_claims()), false).is_ok());
        assert_eq!(
            format!("{:?}", AccessToken::new("eyJ.secret.sig")),
            "AccessToken(…)"
        );
        assert_eq!(expected_issuer("https://abc.supabase.co/"), ISS);
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let doc = r#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw","y":"3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"},
            {"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"},
            {"kty":"EC","crv":"P-256","kid":"short","x":"AAAA","y":"AAAA"},
            {"kty":"EC","crv":"P-256","x":"Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw","y":"3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"},
            {"kty":"EC","crv":"P-256","kid":"wrong-alg","alg":"RS256","x":"Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw","y":"3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"},
            {"kty":"RSA","kid":"weak","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","kid":"ok","x":"Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw","y":"3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg"},
            "garbage"
        ]}"#;
        let jwks = parse_jwks(doc).unwrap();
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["ok"]);
        assert_eq!(parse_jwks("[]"), Err(JwksError::Shape));
        assert_eq!(parse_jwks("not json"), Err(JwksError::Shape));
        assert_eq!(parse_jwks(r#"{"keys":[]}"#).unwrap().keys.len(), 0);
    }

    #[test]
    fn webcrypto_parameters() {
        assert_eq!(
            Alg::Es256.import_params(),
            json!({"name":"ECDSA","namedCurve":"P-256"})
        );
        assert_eq!(
            Alg::Es256.verify_params(),
            json!({"name":"ECDSA","hash":"SHA-256"})
        );
        assert_eq!(Alg::Rs256.import_params()["name"], "RSASSA-PKCS1-v1_5");
        assert_eq!(
            Alg::Hs256.import_params(),
            json!({"name":"HMAC","hash":"SHA-256"})
        );
        let jwks = parse_jwks(JWKS).unwrap();
        let rsa = jwks.find("rs-kid-1").unwrap().to_webcrypto_jwk();
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(rsa["alg"], "RS256");
    }

    #[test]
    fn jwks_cache_policy() {
        let p = JwksCachePolicy::default();
        let mut c = JwksCache::default();
        assert!(c.should_fetch(&p, 0, false));
        assert!(c.usable(&p, 0).is_none());
        c.store(parse_jwks(JWKS).unwrap(), 1_000);
        assert!(!c.should_fetch(&p, 2_000, false));
        // Unknown kid: refetch, but at most once per 30 s.
        assert!(!c.should_fetch(&p, 20_000, true));
        assert!(c.should_fetch(&p, 31_000, true));
        c.record_attempt(31_000);
        assert!(!c.should_fetch(&p, 40_000, true));
        // TTL 10 min.
        assert!(!c.should_fetch(&p, 600_000, false));
        assert!(c.should_fetch(&p, 601_000, false));
        // A failed refresh: stale keys stay usable for an hour past the TTL, then not.
        c.record_attempt(601_000);
        assert!(c.usable(&p, 601_000).is_some());
        assert!(c.usable(&p, 1_000 + 600_000 + 3_600_000 - 1).is_some());
        assert!(c.usable(&p, 1_000 + 600_000 + 3_600_000).is_none());
        // A failing fetch with nothing cached is not retried on every request.
        let mut empty = JwksCache::default();
        empty.record_attempt(0);
        assert!(!empty.should_fetch(&p, 10_000, false));
        assert!(empty.should_fetch(&p, 30_000, false));
    }
}
