//! Storage API errors and their odd wire form: every 4xx is sent as HTTP 400 with the real status
//! as a string in the body; only 5xx keep their status.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::Value;

/// An error as the Storage API renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageError {
    /// The real status (404 for `NoSuchKey`), put in the body as a string.
    pub status: u16,
    /// The body's `error` field.
    pub error: String,
    pub message: String,
    pub code: &'static str,
}

/// The status and code of an error answer, kept on the response for the request log.
#[derive(Debug, Clone)]
pub(crate) struct ErrorInfo {
    pub status: u16,
    pub code: &'static str,
}

impl StorageError {
    fn new(status: u16, error: &str, message: impl Into<String>, code: &'static str) -> Self {
        StorageError {
            status,
            error: error.to_string(),
            message: message.into(),
            code,
        }
    }

    pub(crate) fn no_such_key() -> Self {
        Self::new(404, "not_found", "Object not found", "NoSuchKey")
    }
    pub(crate) fn no_such_bucket() -> Self {
        Self::new(404, "Bucket not found", "Bucket not found", "NoSuchBucket")
    }
    pub(crate) fn key_already_exists() -> Self {
        Self::new(
            409,
            "Duplicate",
            "The resource already exists",
            "KeyAlreadyExists",
        )
    }
    pub(crate) fn bucket_already_exists() -> Self {
        Self::new(
            409,
            "Duplicate",
            "The resource already exists",
            "BucketAlreadyExists",
        )
    }
    pub(crate) fn bucket_not_empty() -> Self {
        Self::new(
            409,
            "ResourceNotEmpty",
            "The bucket you tried to delete is not empty",
            "ResourceNotEmpty",
        )
    }
    /// `AccessDenied` with the given message (a JWT problem or an RLS violation).
    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "Unauthorized", message, "AccessDenied")
    }
    pub(crate) fn rls_violation() -> Self {
        Self::access_denied("new row violates row-level security policy")
    }
    /// A request-validation failure, worded like Fastify's schema errors.
    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "Error", message, "InvalidRequest")
    }
    pub(crate) fn missing_authorization() -> Self {
        Self::invalid_request("headers must have required property 'authorization'")
    }
    pub(crate) fn entity_too_large() -> Self {
        Self::new(
            413,
            "Payload too large",
            "The object exceeded the maximum allowed size",
            "EntityTooLarge",
        )
    }
    pub(crate) fn invalid_key(key: &str) -> Self {
        Self::new(
            400,
            "InvalidKey",
            format!("Invalid key: {key}"),
            "InvalidKey",
        )
    }
    pub(crate) fn invalid_bucket_name() -> Self {
        Self::new(
            400,
            "Invalid Input",
            "Bucket name invalid",
            "InvalidBucketName",
        )
    }
    pub(crate) fn invalid_jwt(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidJWT", message, "InvalidJWT")
    }
    pub(crate) fn invalid_signature() -> Self {
        Self::new(
            400,
            "InvalidSignature",
            "The url do not match the signature",
            "InvalidSignature",
        )
    }
    pub(crate) fn invalid_range() -> Self {
        Self::new(
            400,
            "invalid_range",
            "invalid range provided",
            "InvalidRange",
        )
    }
    pub(crate) fn invalid_mime_type(mime: &str) -> Self {
        Self::new(
            415,
            "invalid_mime_type",
            format!("mime type {mime} is not supported"),
            "InvalidMimeType",
        )
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "Internal Server Error", message, "InternalError")
    }

    /// The HTTP answer: 400 for any 4xx, else the status itself.
    pub(crate) fn into_response(self) -> Response<Body> {
        let real = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let sent = if real.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            real
        };
        // Field order as the real server sends it (serde_json would sort the keys), so a
        // refused read and a missing object are byte-identical to the observed body too.
        let body = format!(
            r#"{{"statusCode":{},"error":{},"message":{},"code":{}}}"#,
            Value::from(self.status.to_string()),
            Value::from(self.error),
            Value::from(self.message),
            Value::from(self.code),
        );
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = sent;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp.extensions_mut().insert(ErrorInfo {
            status: self.status,
            code: self.code,
        });
        resp
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::internal(format!("storage backend: {e}"))
    }
}
