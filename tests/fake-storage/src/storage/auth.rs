//! Who is calling Storage, and what they may do.
//!
//! The caller is the `Authorization: Bearer <jwt>` token, verified with no clock leeway: HS256
//! tokens (the legacy keys, GoTrue's classic user tokens) with the project secret; ES256 / RS256
//! user tokens against the project's published signing keys (its JWKS), as Supabase Storage does
//! once a project uses asymmetric JWT signing keys.
//!
//! The permission model ([`Policy`]) emulates a project whose `storage.objects` carries the
//! owner-folder policies of `migrations/0002_input_storage_policies.sql` on a configured set of
//! buckets (`select`/`insert`/`update`/`delete` to `authenticated`, `bucket_id` in the set and
//! `(storage.foldername(name))[1] = auth.uid()::text`), and nothing else:
//! `service_role` bypasses everything; anyone may read objects of public buckets (Storage skips
//! RLS for them); an `authenticated` user may read and write objects whose first folder is their
//! `sub` in one of the owner-folder buckets; nothing else is allowed.

use std::collections::BTreeSet;

use axum::http::{header, HeaderMap};
use serde_json::Value;

use super::errors::StorageError;
use super::store::Bucket;
use crate::jwt;
use crate::keys::SigningKeys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Service,
    Authenticated,
    /// `anon` and any other role: no policy grants it anything.
    Anon,
}

#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub role: Role,
    pub sub: Option<String>,
}

impl Principal {
    /// Verifies the `Authorization` header: HS256 with `secret`, ES256 / RS256 with `keys`.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        secret: &str,
        keys: &SigningKeys,
    ) -> Result<Self, StorageError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(StorageError::missing_authorization)?;
        let value = String::from_utf8_lossy(value.as_bytes());
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => value.trim(),
        };
        let now = jwt::now_unix();
        let claims = match jwt::Parts::parse(token)
            .ok()
            .as_ref()
            .and_then(jwt::Parts::alg)
        {
            Some("ES256" | "RS256") => keys.verify(token, now),
            _ => jwt::verify(token, secret, now),
        }
        .map_err(|e| StorageError::access_denied(e.to_string()))?;
        Ok(Self::from_claims(&claims))
    }

    fn from_claims(claims: &Value) -> Self {
        let role = match claims.get("role").and_then(Value::as_str) {
            Some("service_role") => Role::Service,
            Some("authenticated") => Role::Authenticated,
            _ => Role::Anon,
        };
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Principal { role, sub }
    }

    pub(crate) fn is_service(&self) -> bool {
        self.role == Role::Service
    }

    /// The owner recorded on objects this caller creates.
    pub(crate) fn owner(&self) -> Option<String> {
        match self.role {
            Role::Service => None,
            _ => self.sub.clone(),
        }
    }

    /// `(storage.foldername(name))[1] = auth.uid()::text` for an authenticated user.
    fn owns_folder_of(&self, key: &str) -> bool {
        if self.role != Role::Authenticated {
            return false;
        }
        match (self.sub.as_deref(), key.split_once('/')) {
            (Some(sub), Some((first, _))) => first == sub,
            _ => false,
        }
    }
}

/// The policies on `storage.objects`: the buckets that carry the owner-folder policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    owner_folder_buckets: BTreeSet<String>,
}

impl Policy {
    pub(crate) fn new<I, S>(owner_folder_buckets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Policy {
            owner_folder_buckets: owner_folder_buckets.into_iter().map(Into::into).collect(),
        }
    }

    /// The owner-folder policy: `bucket_id` in the set and the first folder is the caller's.
    fn owner_folder(&self, p: &Principal, bucket: &str, key: &str) -> bool {
        self.owner_folder_buckets.contains(bucket) && p.owns_folder_of(key)
    }

    /// May read (download, info, sign, list) `key` in `bucket`: the `select` policy, or a
    /// public bucket (Storage skips RLS there), or the service role.
    pub(crate) fn can_read(&self, p: &Principal, bucket: &Bucket, key: &str) -> bool {
        p.is_service() || bucket.public || self.owner_folder(p, &bucket.id, key)
    }

    /// May create, overwrite or delete `key` in `bucket`: the `insert` / `update` / `delete`
    /// policies (all the same owner-folder check), or the service role.
    pub(crate) fn can_write(&self, p: &Principal, bucket: &str, key: &str) -> bool {
        p.is_service() || self.owner_folder(p, bucket, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket(id: &str, public: bool) -> Bucket {
        Bucket::new(id.into(), public, None, None)
    }

    #[test]
    fn owner_folder_policy_applies_to_the_configured_buckets_only() {
        let policy = Policy::new(["inputs"]);
        let user = Principal::from_claims(&json!({"role": "authenticated", "sub": "u1"}));
        assert!(policy.can_write(&user, "inputs", "u1/a.png"));
        assert!(policy.can_write(&user, "inputs", "u1/x/y.png"));
        assert!(!policy.can_write(&user, "inputs", "u1.png"));
        assert!(!policy.can_write(&user, "inputs", "u2/a.png"));
        assert!(!policy.can_write(&user, "other", "u1/a.png"));
        assert!(!policy.can_write(&user, "pub", "u1/a.png"));
        assert!(policy.can_read(&user, &bucket("inputs", false), "u1/a.png"));
        assert!(!policy.can_read(&user, &bucket("inputs", false), "u2/a.png"));
        assert!(!policy.can_read(&user, &bucket("other", false), "u1/a.png"));
        assert!(policy.can_read(&user, &bucket("pub", true), "u2/a.png"));
        let anon = Principal::from_claims(&json!({"role": "anon", "sub": "u1"}));
        assert!(!policy.can_write(&anon, "inputs", "u1/a.png"));
        assert!(!policy.can_read(&anon, &bucket("inputs", false), "u1/a.png"));
        assert!(policy.can_read(&anon, &bucket("pub", true), "x"));
        let svc = Principal::from_claims(&json!({"role": "service_role"}));
        assert!(policy.can_write(&svc, "anything", "anything"));
        assert!(policy.can_read(&svc, &bucket("other", false), "anything"));
    }

    #[test]
    fn asymmetric_tokens_verify_against_the_signing_keys() {
        let keys = SigningKeys::new();
        let headers = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
            h
        };
        for token in [
            keys.user_token_es256("u1", 60, None),
            keys.user_token_rs256("u1", 60, None),
            jwt::user_token("s", "u1", 60, None),
        ] {
            let p = Principal::from_headers(&headers(&token), "s", &keys).unwrap();
            assert_eq!(p.role, Role::Authenticated);
            assert_eq!(p.sub.as_deref(), Some("u1"));
        }
        let stranger = SigningKeys::new().user_token_es256("u1", 60, None);
        let err = Principal::from_headers(&headers(&stranger), "s", &keys).unwrap_err();
        assert_eq!(err.code, "AccessDenied");
        assert_eq!(err.message, "signature verification failed");
    }
}
