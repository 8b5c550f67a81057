//! The project's JWKS and asymmetric user tokens: tokens minted with [`Gateway::keys`] verify
//! against the JWKS fetched over HTTP, with a verifier written here from the published `x`/`y`
//! and `n`/`e` only; rotation, revocation and the hit counter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use fake_storage::jwt;
use serde_json::{json, Value};

use crate::common::*;

/// Verifies a compact JWS against a JWK Set the way a client would: pick the key by `kid`,
/// check that its `alg` matches the header's, verify the signature, then `exp`.
fn verify_with_jwks(token: &str, jwks: &Value) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err("not three parts".into());
    };
    let b64 = |x: &str| URL_SAFE_NO_PAD.decode(x).map_err(|e| e.to_string());
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64(p)?).map_err(|e| e.to_string())?;
    let sig = b64(s)?;
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("unknown kid {kid}"))?;
    if jwk["alg"] != header["alg"] {
        return Err("alg mismatch".into());
    }
    let input = format!("{h}.{p}");
    match header["alg"].as_str() {
        Some("ES256") => {
            use p256::ecdsa::signature::Verifier as _;
            assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
            let x = b64(jwk["x"].as_str().ok_or("no x")?)?;
            let y = b64(jwk["y"].as_str().ok_or("no y")?)?;
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            let key =
                p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|e| e.to_string())?;
            if sig.len() != 64 {
                return Err(format!("ES256 signature of {} bytes", sig.len()));
            }
            let sig = p256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
            key.verify(input.as_bytes(), &sig)
                .map_err(|_| "bad signature".to_string())?;
        }
        Some("RS256") => {
            use rsa::signature::Verifier as _;
            assert_eq!(jwk["kty"], "RSA");
            let n = b64(jwk["n"].as_str().ok_or("no n")?)?;
            let e = b64(jwk["e"].as_str().ok_or("no e")?)?;
            let public = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| e.to_string())?;
            let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
            let sig =
                rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(|e| e.to_string())?;
            key.verify(input.as_bytes(), &sig)
                .map_err(|_| "bad signature".to_string())?;
        }
        other => return Err(format!("unexpected alg {other:?}")),
    }
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= jwt::now_unix() {
        return Err("expired".into());
    }
    Ok(claims)
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The same token with one claim changed and the original signature.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{p}.{}", parts[0], parts[2])
}

async fn fetch_jwks(env: &Env) -> Value {
    json_ok(env.http.get(env.gw.jwks_url()).send().await.unwrap()).await
}

async fn hits_over_http(env: &Env) -> u64 {
    let url = format!("{}/__fake/auth/jwks-hits", env.gw.url());
    json_ok(env.http.get(url).send().await.unwrap()).await["hits"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn jwks_is_served_without_apikey_and_cacheable() {
    let env = start().await;
    let keys = env.gw.keys();
    assert!(env
        .gw
        .jwks_url()
        .ends_with("/auth/v1/.well-known/jwks.json"));

    let r = env.http.get(env.gw.jwks_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=600");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let jwks: Value = r.json().await.unwrap();
    assert_eq!(jwks, keys.jwks());
    let list = jwks["keys"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let ec = &list[0];
    assert_eq!(ec["kty"], "EC");
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["use"], "sig");
    assert_eq!(ec["kid"], keys.es256_kid());
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(ec["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(ec["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let rsa = &list[1];
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["kid"], keys.rs256_kid());
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    // No private parts.
    for k in list {
        assert!(k.get("d").is_none(), "{k}");
    }

    // Only GET (and HEAD) is the JWKS; other methods are Kong's 404 and are not counted.
    let r = env.http.post(env.gw.jwks_url()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(env.gw.jwks_hits(), 1);
    env.gw.stop().await;
}

#[tokio::test]
async fn es256_and_rs256_tokens_round_trip_through_the_published_jwks() {
    let env = start().await;
    let keys = env.gw.keys();
    let iss = env.gw.auth_issuer();
    let jwks = fetch_jwks(&env).await;

    let es = keys.user_token_es256("u1", 3600, Some(&iss));
    assert_eq!(
        header_of(&es),
        json!({"alg": "ES256", "kid": keys.es256_kid(), "typ": "JWT"})
    );
    let claims = verify_with_jwks(&es, &jwks).unwrap();
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["aud"], "authenticated");
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["iss"], iss);
    assert_eq!(claims["is_anonymous"], false);

    let rs = keys.user_token_rs256("u2", 3600, Some(&iss));
    assert_eq!(
        header_of(&rs),
        json!({"alg": "RS256", "kid": keys.rs256_kid(), "typ": "JWT"})
    );
    let claims = verify_with_jwks(&rs, &jwks).unwrap();
    assert_eq!(claims["sub"], "u2");
    assert_eq!(claims["iss"], iss);

    // Arbitrary claims.
    let svc = keys.sign_es256(&json!({"role": "service_role", "exp": jwt::now_unix() + 60}));
    assert_eq!(
        verify_with_jwks(&svc, &jwks).unwrap()["role"],
        "service_role"
    );
    let svc = keys.sign_rs256(&json!({"role": "service_role", "exp": jwt::now_unix() + 60}));
    assert_eq!(
        verify_with_jwks(&svc, &jwks).unwrap()["role"],
        "service_role"
    );

    // A changed payload, a changed signature, an expired token.
    assert_eq!(
        verify_with_jwks(&tamper(&es), &jwks).unwrap_err(),
        "bad signature"
    );
    assert_eq!(
        verify_with_jwks(&tamper(&rs), &jwks).unwrap_err(),
        "bad signature"
    );
    let mut bad_sig = es.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'Q' } else { 'A' });
    assert!(verify_with_jwks(&bad_sig, &jwks).is_err());
    let expired = keys.user_token_es256("u1", -5, Some(&iss));
    assert_eq!(verify_with_jwks(&expired, &jwks).unwrap_err(), "expired");

    // Another key set's token names a kid this project does not publish.
    let stranger = fake_storage::SigningKeys::new().user_token_es256("u1", 3600, None);
    assert!(verify_with_jwks(&stranger, &jwks)
        .unwrap_err()
        .starts_with("unknown kid"));
    let stranger = fake_storage::SigningKeys::new().user_token_rs256("u1", 3600, None);
    assert!(verify_with_jwks(&stranger, &jwks)
        .unwrap_err()
        .starts_with("unknown kid"));
    // HS256 tokens of the legacy secret are not in the JWKS.
    assert!(verify_with_jwks(&env.user("u1"), &jwks).is_err());
    env.gw.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_kid_published_and_signs_with_the_new_one() {
    let env = start().await;
    let keys = env.gw.keys();
    let old_kid = keys.es256_kid();
    let old_token = keys.user_token_es256("u1", 3600, None);
    let rs_kid = keys.rs256_kid();

    let url = format!("{}/__fake/auth/rotate", env.gw.url());
    let new_kid = json_ok(env.http.post(&url).send().await.unwrap()).await["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, old_kid);
    assert_eq!(keys.es256_kid(), new_kid);
    assert_eq!(keys.es256_kids(), vec![old_kid.clone(), new_kid.clone()]);
    assert_eq!(keys.rs256_kid(), rs_kid);

    let jwks = fetch_jwks(&env).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        vec![new_kid.as_str(), old_kid.as_str(), rs_kid.as_str()]
    );

    let new_token = keys.user_token_es256("u1", 3600, None);
    assert_eq!(header_of(&new_token)["kid"], new_kid);
    verify_with_jwks(&new_token, &jwks).unwrap();
    verify_with_jwks(&old_token, &jwks).unwrap();
    // The keys differ: the new token under the old kid does not verify.
    let parts: Vec<&str> = new_token.split('.').collect();
    let h = URL_SAFE_NO_PAD.encode(json!({"alg":"ES256","kid":old_kid,"typ":"JWT"}).to_string());
    let swapped = format!("{h}.{}.{}", parts[1], parts[2]);
    assert_eq!(
        verify_with_jwks(&swapped, &jwks).unwrap_err(),
        "bad signature"
    );

    // Rotation from the library API too.
    let third = keys.rotate_es256();
    assert_eq!(keys.es256_kids().len(), 3);
    assert_eq!(keys.es256_kid(), third);

    // Revoking: the old key leaves the JWKS; the signing key cannot be revoked.
    let revoke = |kid: &str| {
        env.http
            .post(format!("{}/__fake/auth/revoke", env.gw.url()))
            .query(&[("kid", kid)])
            .send()
    };
    let r = json_ok(revoke(&old_kid).await.unwrap()).await;
    assert_eq!(r, json!({"revoked": true}));
    let r = json_ok(revoke(&third).await.unwrap()).await;
    assert_eq!(r, json!({"revoked": false}));
    let r = json_ok(revoke("no-such-kid").await.unwrap()).await;
    assert_eq!(r, json!({"revoked": false}));
    let jwks = fetch_jwks(&env).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    assert!(verify_with_jwks(&old_token, &jwks)
        .unwrap_err()
        .starts_with("unknown kid"));
    verify_with_jwks(&new_token, &jwks).unwrap();
    env.gw.stop().await;
}

#[tokio::test]
async fn jwks_hits_count_every_fetch() {
    let env = start().await;
    assert_eq!(hits_over_http(&env).await, 0);
    for _ in 0..3 {
        fetch_jwks(&env).await;
    }
    // Reading the counter and rotating do not count as fetches.
    assert_eq!(hits_over_http(&env).await, 3);
    let url = format!("{}/__fake/auth/rotate", env.gw.url());
    json_ok(env.http.post(url).send().await.unwrap()).await;
    assert_eq!(env.gw.jwks_hits(), 3);
    let r = env.http.head(env.gw.jwks_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.gw.jwks_hits(), 4);
    // Unknown control routes are Kong's 404.
    let r = env
        .http
        .get(format!("{}/__fake/auth/nope", env.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    env.gw.stop().await;
}
