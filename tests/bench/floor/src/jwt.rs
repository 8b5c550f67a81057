//! The floor's token check, pure (the signature itself is checked with WebCrypto in `lib.rs`):
//! the checks any HS256 verifier of a Supabase access token needs and no more — three base64url
//! parts, `alg` = `HS256`, a 32-byte signature, `exp` and `nbf` with a 30 s leeway, `aud` and
//! `role` = `authenticated`, `iss` = `{SUPABASE_URL}/auth/v1`, `sub` a UUID.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// Clock leeway for `exp` / `nbf` (the worker's default, and PostgREST's).
pub const LEEWAY_S: i64 = 30;
const AUTHENTICATED: &str = "authenticated";

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
pub struct Claims {
    pub sub: String,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    aud: serde_json::Value,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    iss: Option<String>,
}

/// A token split and decoded, its signature not yet checked.
pub struct Parsed<'a> {
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    pub claims: Claims,
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, &'static str> {
    let h = header.ok_or("missing bearer token")?;
    let t = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .ok_or("missing bearer token")?;
    if t.is_empty() || t.len() > 8 * 1024 {
        return Err("malformed bearer token");
    }
    Ok(t)
}

fn b64(part: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "malformed bearer token")
}

/// Splits and decodes an HS256 token.
pub fn parse(token: &str) -> Result<Parsed<'_>, &'static str> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err("malformed bearer token");
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| "malformed bearer token")?;
    if header.alg != "HS256" {
        return Err("token algorithm is not accepted");
    }
    let signature = b64(s)?;
    if signature.len() != 32 {
        return Err("invalid token signature");
    }
    let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| "malformed bearer token")?;
    Ok(Parsed {
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
        claims,
    })
}

/// The claims a user access token must have at `now_s`, for the project whose issuer is `iss`.
#[allow(clippy::cast_possible_truncation)] // NumericDates are seconds, far inside i64
pub fn check_claims(c: &Claims, now_s: i64, iss: &str) -> Result<(), &'static str> {
    if !c.exp.is_finite() || (c.exp.floor() as i64).saturating_add(LEEWAY_S) < now_s {
        return Err("token has expired");
    }
    if let Some(nbf) = c.nbf {
        if !nbf.is_finite() || (nbf.floor() as i64).saturating_sub(LEEWAY_S) > now_s {
            return Err("token is not valid yet");
        }
    }
    let aud_ok = match &c.aud {
        serde_json::Value::String(a) => a == AUTHENTICATED,
        serde_json::Value::Array(list) => list.iter().any(|a| a == AUTHENTICATED),
        _ => false,
    };
    if !aud_ok {
        return Err("token audience is not accepted");
    }
    if c.role.as_deref() != Some(AUTHENTICATED) {
        return Err("token is not a user access token");
    }
    if c.iss.as_deref() != Some(iss) {
        return Err("token issuer is not accepted");
    }
    if uuid::Uuid::try_parse(&c.sub).is_err() {
        return Err("token subject is not a user id");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str, sig_len: usize) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(vec![7u8; sig_len])
        )
    }

    const SUB: &str = "0b5f6c3e-8a57-4c8e-9b43-7b2f3f0e9c11";
    const ISS: &str = "http://127.0.0.1:1/auth/v1";

    fn claims(exp: i64, aud: &str, role: &str) -> String {
        format!(r#"{{"sub":"{SUB}","exp":{exp},"aud":{aud},"role":"{role}","iss":"{ISS}"}}"#)
    }

    #[test]
    fn accepts_a_user_token() {
        let t = token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims(1000, r#""authenticated""#, "authenticated"),
            32,
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
        assert_eq!(p.signature.len(), 32);
        assert_eq!(check_claims(&p.claims, 1000, ISS), Ok(()));
        // Leeway: 30 s after exp still passes, 31 s does not.
        assert_eq!(check_claims(&p.claims, 1030, ISS), Ok(()));
        assert_eq!(check_claims(&p.claims, 1031, ISS), Err("token has expired"));
        assert_eq!(p.claims.sub, SUB);
    }

    #[test]
    fn refuses_the_rest() {
        let good = claims(1000, r#"["x","authenticated"]"#, "authenticated");
        assert!(parse(&token(r#"{"alg":"none"}"#, &good, 32)).is_err());
        assert!(parse(&token(r#"{"alg":"RS256"}"#, &good, 32)).is_err());
        assert!(parse(&token(r#"{"alg":"HS256"}"#, &good, 31)).is_err());
        assert!(parse("a.b").is_err());
        assert!(parse("a.b.c.d").is_err());
        let t = token(r#"{"alg":"HS256"}"#, &good, 32);
        let p = parse(&t).unwrap();
        assert_eq!(check_claims(&p.claims, 900, ISS), Ok(()));
        assert_eq!(
            check_claims(&p.claims, 900, "http://other/auth/v1"),
            Err("token issuer is not accepted")
        );
        for (aud, role) in [
            (r#""authenticated""#, "anon"),
            (r#""other""#, "authenticated"),
        ] {
            let t = token(r#"{"alg":"HS256"}"#, &claims(1000, aud, role), 32);
            assert!(check_claims(&parse(&t).unwrap().claims, 900, ISS).is_err());
        }
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert!(bearer(Some("Basic abc")).is_err());
        assert!(bearer(None).is_err());
    }
}
