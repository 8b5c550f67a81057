//! HS256 JSON Web Tokens, as Supabase's legacy keys and user access tokens use them.
//!
//! Owns signing and verification (signature, then `exp` with no leeway, like the Storage API) and
//! helpers that mint the three kinds of tokens a test needs: the legacy `service_role` and `anon`
//! keys and a user access token (`role` = `authenticated`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `exp` of the legacy demo keys of self-hosted Supabase (2032-11-12).
const LEGACY_KEY_EXP: i64 = 1_983_812_996;

/// Why a token was refused. `Display` gives the texts the Storage API puts in its error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts, or a part that is not JSON.
    Malformed,
    /// The header names an algorithm other than HS256.
    UnsupportedAlgorithm(String),
    /// The HMAC does not match.
    BadSignature,
    /// `exp` is at or before `now`.
    Expired,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("Invalid Compact JWS"),
            JwtError::UnsupportedAlgorithm(alg) => {
                write!(
                    f,
                    "\"alg\" (Algorithm) Header Parameter value not allowed: {alg}"
                )
            }
            JwtError::BadSignature => f.write_str("signature verification failed"),
            JwtError::Expired => f.write_str("\"exp\" claim timestamp check failed"),
        }
    }
}

impl std::error::Error for JwtError {}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length")
}

/// Signs `claims` with HS256 and returns the compact token.
pub fn sign(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Verifies an HS256 token: the signature, then `exp` (if present) against `now_unix` with no
/// leeway (`exp <= now` is expired). Returns the claims.
pub fn verify(token: &str, secret: &str, now_unix: i64) -> Result<Value, JwtError> {
    let parts = Parts::parse(token)?;
    match parts.alg() {
        Some("HS256") => {}
        Some(other) => return Err(JwtError::UnsupportedAlgorithm(other.to_string())),
        None => return Err(JwtError::Malformed),
    }
    let mut m = mac(secret);
    m.update(parts.signing_input.as_bytes());
    m.verify_slice(&parts.signature)
        .map_err(|_| JwtError::BadSignature)?;
    check_exp(&parts.claims, now_unix)?;
    Ok(parts.claims)
}

/// A compact JWS split and decoded, before any verification.
pub(crate) struct Parts<'a> {
    pub header: Value,
    pub claims: Value,
    /// `base64url(header) . base64url(claims)`, as signed.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

impl<'a> Parts<'a> {
    /// Three base64url parts; header and claims JSON objects.
    pub(crate) fn parse(token: &'a str) -> Result<Self, JwtError> {
        let mut split = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (split.next(), split.next(), split.next(), split.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(h)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| JwtError::Malformed)?;
        let claims: Value = decode_json(p)?;
        if !header.is_object() || !claims.is_object() {
            return Err(JwtError::Malformed);
        }
        Ok(Parts {
            header,
            claims,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// The header's `alg`.
    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
}

/// `exp` (if present) against `now_unix`, no leeway.
pub(crate) fn check_exp(claims: &Value, now_unix: i64) -> Result<(), JwtError> {
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_f64().ok_or(JwtError::Malformed)?;
        if exp <= now_unix as f64 {
            return Err(JwtError::Expired);
        }
    }
    Ok(())
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The legacy `service_role` key of a project with this JWT secret (bypasses RLS).
pub fn service_role_key(secret: &str) -> String {
    sign(
        &json!({"iss": "supabase-demo", "role": "service_role", "exp": LEGACY_KEY_EXP}),
        secret,
    )
}

/// The legacy `anon` key of a project with this JWT secret.
pub fn anon_key(secret: &str) -> String {
    sign(
        &json!({"iss": "supabase-demo", "role": "anon", "exp": LEGACY_KEY_EXP}),
        secret,
    )
}

/// A user access token as GoTrue would issue it: `role` and `aud` = `authenticated`, `sub`,
/// `email`, `iat` = now, `exp` = now + `ttl_secs` (negative for an already expired token), and
/// `iss` when given (Supabase uses `<SUPABASE_URL>/auth/v1`).
pub fn user_token(secret: &str, sub: &str, ttl_secs: i64, iss: Option<&str>) -> String {
    sign(&user_claims(sub, ttl_secs, iss), secret)
}

/// The claims of [`user_token`] (also used by the ES256 / RS256 helpers of
/// [`crate::SigningKeys`]).
pub fn user_claims(sub: &str, ttl_secs: i64, iss: Option<&str>) -> Value {
    let now = now_unix();
    let mut claims = json!({
        "aud": "authenticated",
        "role": "authenticated",
        "sub": sub,
        "email": format!("{sub}@users.test"),
        "iat": now,
        "exp": now + ttl_secs,
        "is_anonymous": false,
    });
    if let (Some(iss), Some(obj)) = (iss, claims.as_object_mut()) {
        obj.insert("iss".to_string(), Value::String(iss.to_string()));
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let t = sign(&json!({"role": "anon", "exp": 100}), "s1");
        assert_eq!(verify(&t, "s1", 99).unwrap()["role"], "anon");
        assert_eq!(verify(&t, "s1", 100), Err(JwtError::Expired));
        assert_eq!(verify(&t, "s2", 99), Err(JwtError::BadSignature));
        assert_eq!(verify("a.b", "s1", 0), Err(JwtError::Malformed));
        assert_eq!(verify("x.y.z", "s1", 0), Err(JwtError::Malformed));
        let no_exp = sign(&json!({"role": "anon"}), "s1");
        assert!(verify(&no_exp, "s1", i64::MAX).is_ok());
    }

    #[test]
    fn rejects_other_algorithms() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"role":"service_role"}"#);
        let t = format!("{h}.{p}.");
        assert_eq!(
            verify(&t, "s", 0),
            Err(JwtError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn helpers_carry_the_expected_claims() {
        let s = "secret";
        let now = now_unix();
        let svc = verify(&service_role_key(s), s, now).unwrap();
        assert_eq!(svc["role"], "service_role");
        assert_eq!(svc["iss"], "supabase-demo");
        assert_eq!(verify(&anon_key(s), s, now).unwrap()["role"], "anon");
        let u = verify(&user_token(s, "u1", 60, Some("http://x/auth/v1")), s, now).unwrap();
        assert_eq!(u["sub"], "u1");
        assert_eq!(u["aud"], "authenticated");
        assert_eq!(u["role"], "authenticated");
        assert_eq!(u["iss"], "http://x/auth/v1");
        assert_eq!(
            verify(&user_token(s, "u1", -1, None), s, now),
            Err(JwtError::Expired)
        );
    }
}
