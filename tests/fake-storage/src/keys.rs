//! Asymmetric signing keys of the fake project: what Supabase Auth uses when a project has
//! moved to JWT signing keys (`shared/reference/supabase-http.md` §4).
//!
//! [`SigningKeys`] holds ES256 (P-256) keys and one RS256 (2048-bit) key, each with a `kid`,
//! and mints compact JWS tokens whose header is `{"alg","kid","typ":"JWT"}`. [`SigningKeys::jwks`]
//! is the document the gateway serves at `/auth/v1/.well-known/jwks.json`. ES256 keys can be
//! rotated ([`SigningKeys::rotate_es256`]: the new key signs, the old ones stay published) and
//! retired ([`SigningKeys::revoke_es256`]: the key leaves the JWKS).
//!
//! ES256 keys are random per instance. The RSA key is a fixed test key (RSA key generation is
//! slow in debug builds); its `kid` is still new per instance, so a token minted by one
//! [`SigningKeys`] never matches a `kid` of another. Everything is behind one lock, so a shared
//! `Arc<SigningKeys>` can be used from tests and from the gateway at the same time.

use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use rand_core::OsRng;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::SignatureEncoding as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::jwt;

/// A 2048-bit RSA key (PKCS#8 PEM) made for this crate with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. Test use only: it is public,
/// so tokens it signs prove nothing outside tests.
const TEST_RSA_KEY_PEM: &str = include_str!("test-rsa-key.pem");

struct Es256Key {
    kid: String,
    key: p256::ecdsa::SigningKey,
}

impl Es256Key {
    fn generate() -> Self {
        Es256Key {
            kid: new_kid(),
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        // An uncompressed point always has both coordinates.
        let x = point.x().map(|x| URL_SAFE_NO_PAD.encode(x));
        let y = point.y().map(|y| URL_SAFE_NO_PAD.encode(y));
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }
}

struct Rs256Key {
    kid: String,
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Rs256Key {
    fn fixed() -> Self {
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_RSA_KEY_PEM)
            .expect("the embedded RSA test key is valid PKCS#8");
        let n = private.n().to_bytes_be();
        let e = private.e().to_bytes_be();
        Rs256Key {
            kid: new_kid(),
            key: rsa::pkcs1v15::SigningKey::<Sha256>::new(private),
            n,
            e,
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
        })
    }
}

struct Inner {
    /// Published ES256 keys, oldest first; the last one signs.
    es256: Vec<Es256Key>,
    rs256: Rs256Key,
}

/// The project's asymmetric signing keys: ES256 (rotatable) and RS256. See the module docs.
pub struct SigningKeys {
    inner: RwLock<Inner>,
}

impl Default for SigningKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("es256_kids", &self.es256_kids())
            .field("rs256_kid", &self.rs256_kid())
            .finish()
    }
}

impl SigningKeys {
    /// One new random ES256 key and the fixed RS256 test key, each with a new `kid`.
    pub fn new() -> Self {
        SigningKeys {
            inner: RwLock::new(Inner {
                es256: vec![Es256Key::generate()],
                rs256: Rs256Key::fixed(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The `kid` of the ES256 key that signs now.
    pub fn es256_kid(&self) -> String {
        let inner = self.read();
        active(&inner).kid.clone()
    }

    /// The `kid`s of every published ES256 key, oldest first (the last one signs).
    pub fn es256_kids(&self) -> Vec<String> {
        self.read().es256.iter().map(|k| k.kid.clone()).collect()
    }

    /// The `kid` of the RS256 key.
    pub fn rs256_kid(&self) -> String {
        self.read().rs256.kid.clone()
    }

    /// Signs `claims` with the current ES256 key: a compact JWS whose signature is the raw
    /// 64-byte `r || s`, base64url.
    pub fn sign_es256(&self, claims: &Value) -> String {
        let inner = self.read();
        let key = active(&inner);
        let input = signing_input("ES256", &key.kid, claims);
        let sig: p256::ecdsa::Signature = key.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// Signs `claims` with the RS256 key (RSASSA-PKCS1-v1_5 with SHA-256).
    pub fn sign_rs256(&self, claims: &Value) -> String {
        let inner = self.read();
        let input = signing_input("RS256", &inner.rs256.kid, claims);
        let sig = inner.rs256.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// A user access token (the claims of [`jwt::user_token`]) signed with ES256.
    pub fn user_token_es256(&self, sub: &str, ttl_secs: i64, iss: Option<&str>) -> String {
        self.sign_es256(&jwt::user_claims(sub, ttl_secs, iss))
    }

    /// A user access token (the claims of [`jwt::user_token`]) signed with RS256.
    pub fn user_token_rs256(&self, sub: &str, ttl_secs: i64, iss: Option<&str>) -> String {
        self.sign_rs256(&jwt::user_claims(sub, ttl_secs, iss))
    }

    /// The public keys as a JWK Set: every ES256 key, newest (signing) first, then the RS256
    /// key. `{"keys":[{kty:"EC",crv:"P-256",x,y,kid,alg:"ES256",use:"sig"},…,
    /// {kty:"RSA",n,e,kid,alg:"RS256",use:"sig"}]}`.
    pub fn jwks(&self) -> Value {
        let inner = self.read();
        let mut keys: Vec<Value> = inner.es256.iter().rev().map(Es256Key::jwk).collect();
        keys.push(inner.rs256.jwk());
        json!({ "keys": keys })
    }

    /// Adds a new ES256 key with a new `kid` and signs with it from now on; the previous keys
    /// stay in the JWKS. Returns the new `kid`.
    pub fn rotate_es256(&self) -> String {
        let key = Es256Key::generate();
        let kid = key.kid.clone();
        self.write().es256.push(key);
        kid
    }

    /// Removes a previous ES256 key from the JWKS (Supabase's "revoked"). Returns false, and
    /// changes nothing, when `kid` is unknown or is the key that signs now.
    pub fn revoke_es256(&self, kid: &str) -> bool {
        let mut inner = self.write();
        let last = inner.es256.len() - 1;
        match inner.es256.iter().position(|k| k.kid == kid) {
            Some(i) if i != last => {
                inner.es256.remove(i);
                true
            }
            _ => false,
        }
    }
}

impl SigningKeys {
    /// Verifies an ES256 or RS256 token against the published keys, as Storage and PostgREST do
    /// with a project's JWKS: the key is found by the header's `kid` (and key type), then the
    /// signature, then `exp` with no leeway. A `kid` that is not published (another project's,
    /// or a revoked one) fails like a bad signature. Other algorithms are
    /// [`jwt::JwtError::UnsupportedAlgorithm`]. Returns the claims.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<Value, jwt::JwtError> {
        use jwt::JwtError;
        let parts = jwt::Parts::parse(token)?;
        let kid = parts.header.get("kid").and_then(Value::as_str);
        let input = parts.signing_input.as_bytes();
        let verified = match parts.alg() {
            Some("ES256") => {
                use p256::ecdsa::signature::Verifier as _;
                let inner = self.read();
                let key = inner
                    .es256
                    .iter()
                    .find(|k| Some(k.kid.as_str()) == kid)
                    .ok_or(JwtError::BadSignature)?;
                let sig = p256::ecdsa::Signature::from_slice(&parts.signature)
                    .map_err(|_| JwtError::BadSignature)?;
                key.key.verifying_key().verify(input, &sig).is_ok()
            }
            Some("RS256") => {
                use rsa::signature::Verifier as _;
                let inner = self.read();
                if Some(inner.rs256.kid.as_str()) != kid {
                    return Err(JwtError::BadSignature);
                }
                let vk = rsa::signature::Keypair::verifying_key(&inner.rs256.key);
                let sig = rsa::pkcs1v15::Signature::try_from(parts.signature.as_slice())
                    .map_err(|_| JwtError::BadSignature)?;
                vk.verify(input, &sig).is_ok()
            }
            Some(other) => return Err(JwtError::UnsupportedAlgorithm(other.to_string())),
            None => return Err(JwtError::Malformed),
        };
        if !verified {
            return Err(JwtError::BadSignature);
        }
        jwt::check_exp(&parts.claims, now_unix)?;
        Ok(parts.claims)
    }
}

/// The ES256 key that signs now (there is always at least one: revocation keeps the last).
fn active(inner: &Inner) -> &Es256Key {
    inner
        .es256
        .last()
        .expect("SigningKeys always holds an ES256 key")
}

fn new_kid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `base64url(header) . base64url(claims)`.
fn signing_input(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string().as_bytes()),
        URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn parts(token: &str) -> (Value, Vec<u8>, String) {
        let v: Vec<&str> = token.split('.').collect();
        assert_eq!(v.len(), 3);
        let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(v[0]).unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(v[2]).unwrap();
        (header, sig, format!("{}.{}", v[0], v[1]))
    }

    #[test]
    fn es256_signature_is_raw_r_s_and_verifies_with_the_key() {
        let keys = SigningKeys::new();
        let t = keys.sign_es256(&json!({"a": 1}));
        let (header, sig, input) = parts(&t);
        assert_eq!(
            header,
            json!({"alg":"ES256","kid":keys.es256_kid(),"typ":"JWT"})
        );
        assert_eq!(sig.len(), 64);
        let inner = keys.read();
        let vk = active(&inner).key.verifying_key();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        vk.verify(input.as_bytes(), &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err());
    }

    #[test]
    fn rs256_signature_is_256_bytes_and_verifies_with_the_key() {
        use rsa::signature::Verifier as _;
        let keys = SigningKeys::new();
        let t = keys.sign_rs256(&json!({"a": 1}));
        let (header, sig, input) = parts(&t);
        assert_eq!(
            header,
            json!({"alg":"RS256","kid":keys.rs256_kid(),"typ":"JWT"})
        );
        assert_eq!(sig.len(), 256);
        let inner = keys.read();
        let vk = rsa::signature::Keypair::verifying_key(&inner.rs256.key);
        let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
        vk.verify(input.as_bytes(), &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err());
    }

    #[test]
    fn verify_accepts_own_tokens_and_refuses_others() {
        let keys = SigningKeys::new();
        let now = jwt::now_unix();
        let es = keys.user_token_es256("u1", 60, None);
        assert_eq!(keys.verify(&es, now).unwrap()["sub"], "u1");
        let rs = keys.user_token_rs256("u2", 60, None);
        assert_eq!(keys.verify(&rs, now).unwrap()["sub"], "u2");
        let other = SigningKeys::new();
        assert_eq!(
            other.verify(&es, now),
            Err(jwt::JwtError::BadSignature),
            "unknown kid"
        );
        assert_eq!(other.verify(&rs, now), Err(jwt::JwtError::BadSignature));
        let expired = keys.user_token_es256("u1", -1, None);
        assert_eq!(keys.verify(&expired, now), Err(jwt::JwtError::Expired));
        let (head, _) = es.rsplit_once('.').unwrap();
        let (_, other_sig) = keys
            .sign_es256(&json!({"x": 1}))
            .rsplit_once('.')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert_eq!(
            keys.verify(&format!("{head}.{other_sig}"), now),
            Err(jwt::JwtError::BadSignature)
        );
        let hs = jwt::user_token("secret", "u1", 60, None);
        assert_eq!(
            keys.verify(&hs, now),
            Err(jwt::JwtError::UnsupportedAlgorithm("HS256".into()))
        );
        // A rotated-out key still verifies while published; a revoked one does not.
        let kid = keys.es256_kid();
        keys.rotate_es256();
        assert!(keys.verify(&es, now).is_ok());
        assert!(keys.revoke_es256(&kid));
        assert_eq!(keys.verify(&es, now), Err(jwt::JwtError::BadSignature));
    }

    #[test]
    fn kids_are_new_per_instance_and_revocation_keeps_the_signing_key() {
        let a = SigningKeys::new();
        let b = SigningKeys::new();
        assert_ne!(a.es256_kid(), b.es256_kid());
        assert_ne!(a.rs256_kid(), b.rs256_kid());
        let first = a.es256_kid();
        assert!(!a.revoke_es256(&first), "the only key signs");
        let second = a.rotate_es256();
        assert!(!a.revoke_es256(&second));
        assert!(a.revoke_es256(&first));
        assert!(!a.revoke_es256(&first));
        assert_eq!(a.es256_kids(), vec![second]);
        assert_eq!(a.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}
