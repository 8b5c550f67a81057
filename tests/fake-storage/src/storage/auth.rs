//! Who is calling Storage, and what they may do.
//!
//! The caller is the `Authorization: Bearer <jwt>` token, verified with the project secret and no
//! clock leeway. The permission model emulates a new Supabase project whose `storage.objects`
//! has one owner-folder policy (`FOR ALL TO authenticated`, first folder = `auth.uid()`):
//! `service_role` bypasses everything; anyone may read objects of public buckets; an
//! `authenticated` user may read and write objects whose first folder is their `sub`, in any
//! bucket; nothing else is allowed.

use axum::http::{header, HeaderMap};
use serde_json::Value;

use super::errors::StorageError;
use super::store::Bucket;
use crate::jwt;

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
    /// Verifies the `Authorization` header.
    pub(crate) fn from_headers(headers: &HeaderMap, secret: &str) -> Result<Self, StorageError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(StorageError::missing_authorization)?;
        let value = String::from_utf8_lossy(value.as_bytes());
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => value.trim(),
        };
        let claims = jwt::verify(token, secret, jwt::now_unix())
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

    /// May read (download, info, sign, list) `key` in `bucket`.
    pub(crate) fn can_read(&self, bucket: &Bucket, key: &str) -> bool {
        self.is_service() || bucket.public || self.owns_folder_of(key)
    }

    /// May create, overwrite or delete `key`.
    pub(crate) fn can_write(&self, key: &str) -> bool {
        self.is_service() || self.owns_folder_of(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket(public: bool) -> Bucket {
        Bucket::new("b".into(), public, None, None)
    }

    #[test]
    fn owner_folder_policy() {
        let user = Principal::from_claims(&json!({"role": "authenticated", "sub": "u1"}));
        assert!(user.can_write("u1/a.png"));
        assert!(user.can_write("u1/x/y.png"));
        assert!(!user.can_write("u1.png"));
        assert!(!user.can_write("u2/a.png"));
        assert!(!user.can_read(&bucket(false), "u2/a.png"));
        assert!(user.can_read(&bucket(true), "u2/a.png"));
        let anon = Principal::from_claims(&json!({"role": "anon", "sub": "u1"}));
        assert!(!anon.can_write("u1/a.png"));
        assert!(!anon.can_read(&bucket(false), "u1/a.png"));
        assert!(anon.can_read(&bucket(true), "x"));
        let svc = Principal::from_claims(&json!({"role": "service_role"}));
        assert!(svc.can_write("anything"));
        assert!(svc.can_read(&bucket(false), "anything"));
    }
}
