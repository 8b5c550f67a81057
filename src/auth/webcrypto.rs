//! Signature checks through the runtime's WebCrypto (`crypto.subtle`): HMAC SHA-256 (HS256),
//! ECDSA P-256 SHA-256 (ES256) and RSASSA-PKCS1-v1_5 SHA-256 (RS256). Using the runtime's
//! native crypto keeps RSA/ECDSA code out of the WebAssembly bundle.

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The key to check a signature with.
pub enum Key<'a> {
    /// HS256 shared secret.
    Hmac(&'a [u8]),
    /// ES256 public key as JWK coordinates (base64url).
    EcP256 { x: &'a str, y: &'a str },
    /// RS256 public key as JWK modulus and exponent (base64url).
    Rsa { n: &'a str, e: &'a str },
}

thread_local! {
    /// The HS256 key, imported once per isolate (the secret it was imported from, and the key):
    /// every request verifies against the same `SUPABASE_JWT_SECRET`.
    static HMAC_VERIFY_KEY: RefCell<Option<(Vec<u8>, web_sys::CryptoKey)>> =
        const { RefCell::new(None) };
}

fn obj(pairs: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v)?;
    }
    Ok(o)
}

fn subtle() -> Result<web_sys::SubtleCrypto, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    if crypto.is_undefined() {
        return Err(JsValue::from_str("crypto is not available"));
    }
    Ok(crypto.unchecked_into::<web_sys::Crypto>().subtle())
}

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// HMAC-SHA256 of `data` with `key` (webhook signatures).
pub async fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    hmac_js(key, data).await.map_err(|e| format!("{e:?}"))
}

async fn hmac_js(key: &[u8], data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let subtle = subtle()?;
    let crypto_key = import_hmac(&subtle, key, "sign").await?;
    let mac = JsFuture::from(subtle.sign_with_str_and_u8_array("HMAC", &crypto_key, data)?).await?;
    Ok(Uint8Array::new(&mac).to_vec())
}

/// Checks `signature` over `signing_input` with `key`. `Ok(false)` = a wrong signature;
/// `Err` = the key could not be used (malformed JWK and the like).
pub async fn verify(key: Key<'_>, signing_input: &[u8], signature: &[u8]) -> Result<bool, String> {
    verify_js(key, signing_input, signature)
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn verify_js(key: Key<'_>, signing_input: &[u8], signature: &[u8]) -> Result<bool, JsValue> {
    let subtle = subtle()?;
    let (crypto_key, verify_alg) = match key {
        Key::Hmac(secret) => (
            hmac_verify_key(&subtle, secret).await?,
            obj(&[("name", s("HMAC"))])?,
        ),
        other => import_public(&subtle, other).await?,
    };
    let sig = Uint8Array::from(signature);
    let data = Uint8Array::from(signing_input);
    let ok = JsFuture::from(
        subtle.verify_with_object_and_buffer_source_and_buffer_source(
            &verify_alg,
            &crypto_key,
            &sig,
            &data,
        )?,
    )
    .await?;
    Ok(ok.as_bool().unwrap_or(false))
}

/// The HS256 verification key for `secret`: the isolate's imported key when it was imported from
/// the same secret, else imported now and kept.
async fn hmac_verify_key(
    subtle: &web_sys::SubtleCrypto,
    secret: &[u8],
) -> Result<web_sys::CryptoKey, JsValue> {
    let cached = HMAC_VERIFY_KEY.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|(from, _)| from.as_slice() == secret)
            .map(|(_, key)| key.clone())
    });
    if let Some(key) = cached {
        return Ok(key);
    }
    let key = import_hmac(subtle, secret, "verify").await?;
    HMAC_VERIFY_KEY.with(|k| *k.borrow_mut() = Some((secret.to_vec(), key.clone())));
    Ok(key)
}

/// Imports a raw HMAC SHA-256 key for one usage (`sign` or `verify`).
async fn import_hmac(
    subtle: &web_sys::SubtleCrypto,
    secret: &[u8],
    usage: &str,
) -> Result<web_sys::CryptoKey, JsValue> {
    let alg = obj(&[
        ("name", s("HMAC")),
        ("hash", obj(&[("name", s("SHA-256"))])?.into()),
    ])?;
    Ok(JsFuture::from(subtle.import_key_with_object(
        "raw",
        &Uint8Array::from(secret),
        &alg,
        false,
        &Array::of1(&s(usage)),
    )?)
    .await?
    .unchecked_into())
}

/// Imports an ES256 or RS256 public key (JWK); the algorithm to verify with comes along.
async fn import_public(
    subtle: &web_sys::SubtleCrypto,
    key: Key<'_>,
) -> Result<(web_sys::CryptoKey, Object), JsValue> {
    let sha256 = obj(&[("name", s("SHA-256"))])?;
    let (key_data, import_alg, verify_alg) = match key {
        Key::Hmac(_) => return Err(JsValue::from_str("not a public key")),
        Key::EcP256 { x, y } => (
            obj(&[
                ("kty", s("EC")),
                ("crv", s("P-256")),
                ("x", s(x)),
                ("y", s(y)),
                ("ext", JsValue::TRUE),
            ])?,
            obj(&[("name", s("ECDSA")), ("namedCurve", s("P-256"))])?,
            obj(&[("name", s("ECDSA")), ("hash", sha256.into())])?,
        ),
        Key::Rsa { n, e } => (
            obj(&[
                ("kty", s("RSA")),
                ("n", s(n)),
                ("e", s(e)),
                ("alg", s("RS256")),
                ("ext", JsValue::TRUE),
            ])?,
            obj(&[("name", s("RSASSA-PKCS1-v1_5")), ("hash", sha256.into())])?,
            obj(&[("name", s("RSASSA-PKCS1-v1_5"))])?,
        ),
    };
    let crypto_key: web_sys::CryptoKey = JsFuture::from(subtle.import_key_with_object(
        "jwk",
        &key_data,
        &import_alg,
        false,
        &Array::of1(&s("verify")),
    )?)
    .await?
    .unchecked_into();
    Ok((crypto_key, verify_alg))
}
